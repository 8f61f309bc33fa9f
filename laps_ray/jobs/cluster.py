r"""cluster: segments' latent action codes → clusters of action primitives, metrics and an HTML report.

Local (starts or joins a Ray instance; ``--local`` embeds in this process)::

    python -m laps_ray.jobs.cluster --segments out/ --output runs/clusters [--embedder runs/emb] \
        [--labels labels.csv] [cluster.method=kmeans cluster.k=0 features=tfidf ...]

On a cluster (``--segments`` and ``--output`` on storage every node sees)::

    ray job submit --working-dir . -- \
        python -m laps_ray.jobs.cluster --segments /shared/out --output /shared/runs/clusters

**Features** (``features=``): ``tfidf`` (default without ``--embedder``: code frequencies over the TRUE
code count, 1920 for 2048, weighted by inverse document frequency), ``bow`` (frequencies), ``mean``
(mean quantized vector), ``lstm`` (default with a ``train_embedder`` run as ``--embedder``), or
``transformer`` (the paper's frozen Transformer, seeded, eval mode, its weights saved in
``<output>/transformer/``; pass that folder as ``--embedder`` to reuse them).

**Clustering** (``cluster.*``, on the driver): ``method`` kmeans | gmm | hdbscan, ``metric`` cosine |
euclidean, ``k`` (0 = chosen over ``k_min..k_max`` by silhouette), ``seed`` (every random choice),
``pca_dims``, ``standardize``, ``stability_seeds``. The segments' features are computed on a pool of
Ray actors (``resources.*``), each loading the embedder once.

**Outputs** (``--output DIR``): ``assignments.csv`` (``video,segment,start_sec,end_sec,cluster,
confidence,outlier,has_codes[,label]``), ``embeddings.npy``, ``metrics.json`` (silhouette,
Davies–Bouldin, Calinski–Harabasz, stability ARI across seeds, k selection; with ``--labels``: ARI, NMI,
purity, Hungarian accuracy), ``umap_clusters.png`` (+ ``umap_labels.png``), ``k_selection.png``,
``report.html`` (self-contained; per cluster a few clips playable in the page, with poster frames in
``posters/``), ``cluster_model.npz`` (nearest-centroid model with outlier thresholds:
``laps_ray.io.cluster_model.assign_segments`` assigns new segments), ``config.yaml``, ``run.json``.
"""

from __future__ import annotations

import dataclasses
import logging

from laps_ray.config import ResourcesConfig, check_choice
from laps_ray.io.run_manifest import RunManifest
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import NUM_ACTORS, OUTPUT, Flag, run_job
from laps_ray.pipeline.discovery import DiscoveryConfig, DiscoveryInputs, DiscoveryResult, discover, prepare
from laps_ray.pipeline.segment_embedding import EmbeddedBatch, SegmentEmbedder

log = logging.getLogger("laps_ray")


@dataclasses.dataclass
class ClusterJobConfig(DiscoveryConfig):
    """``configs/cluster.yaml``: :class:`~laps_ray.pipeline.discovery.DiscoveryConfig` plus where the
    features are computed.

    Attributes:
        backend: ``ray`` (a pool of embedding actors) or ``local`` (in this process).
        resources: the actor pool (``num_actors`` 0 = fill the cluster's CPUs; GPUs are not used).
    """

    backend: str = "ray"
    resources: ResourcesConfig = dataclasses.field(
        default_factory=lambda: ResourcesConfig(cpus_per_actor=1.0, gpus_per_actor=0.0)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.backend, ("ray", "local"), "backend")


def embed_local(inputs: DiscoveryInputs, chunks: list) -> list[EmbeddedBatch]:
    """Every chunk in this process."""
    emb = SegmentEmbedder(inputs.kind, inputs.num_codes, inputs.model_dir)
    return [emb.embed(refs, idx) for refs, idx in chunks]


def embed_on_ray(cfg: ClusterJobConfig, inputs: DiscoveryInputs, chunks: list) -> list[EmbeddedBatch]:
    """Every chunk on a pool of :class:`~laps_ray.actors.embed_actor.EmbedWorker` actors.

    Raises:
        laps_ray.jobs._runtime.JobError: the actors cannot start, a sidecar is malformed (its file and
            reason), or a task failed.
    """
    from laps_ray.actors.embed_actor import EmbedWorker
    from laps_ray.actors.pool import ActorPool, ActorStartError, Task, TaskFailed, actor_options, pool_size

    res = cfg.resources
    size = pool_size(res.num_actors, res.cpus_per_actor, 0.0, len(chunks))
    pool = ActorPool(
        EmbedWorker,
        (inputs.kind, inputs.num_codes, inputs.model_dir),
        actor_options(res.cpus_per_actor, 0.0, res.max_retries),
        size,
        "embed",
    )
    parts: list[EmbeddedBatch] = []
    errors: list[str] = []

    def on_result(task: Task, result: object) -> None:
        if isinstance(result, EmbeddedBatch):
            parts.append(result)
        elif isinstance(result, TaskFailed):
            errors.append(f"batch {task.tag}: {result.reason}")
        else:
            errors.append(str(result.get("error")))  # type: ignore[union-attr]

    try:
        pool.start()
        log.info("embedding %d segments (%s) on %d actor(s)", len(inputs.refs), inputs.kind, size)
        pool.run([Task("embed", (refs, idx), tag=i) for i, (refs, idx) in enumerate(chunks)], on_result)
    except ActorStartError as exc:
        raise rt.JobError(str(exc)) from None
    finally:
        pool.close()
    if errors:
        raise rt.JobError(f"{len(errors)} embedding task(s) failed; first: {errors[0]}")
    return parts


def run(cfg: ClusterJobConfig) -> DiscoveryResult:
    """Check inputs, (for ``backend=ray``) start or join Ray, embed, cluster and write every output."""
    inputs = prepare(cfg)
    manifest = RunManifest.create(
        inputs.output, "cluster", cfg, features=inputs.kind, model_dir=inputs.model_dir
    )
    if cfg.backend == "ray":
        rt.init_ray()
        result = discover(cfg, inputs, lambda inp, chunks: embed_on_ray(cfg, inp, chunks))
    else:
        result = discover(cfg, inputs, embed_local)
    manifest.extra["summary"] = {
        k: result.metrics.get(k) for k in ("features", "method", "k", "n_clustered", "timings")
    }
    manifest.write(finished=True)
    return result


def summary_line(r: DiscoveryResult) -> str:
    """Where the outputs went, k, and the headline metrics."""
    m = r.metrics
    internal = m.get("internal") or {}
    sil = internal.get("silhouette")
    lines = [
        f"cluster: {m['n_clustered']} segments ({m['features']}) -> {m['k']} clusters ({m['method']}, "
        f"{m['metric']}) in {r.seconds:.1f}s -> {r.output}",
        f"  silhouette {_round(sil)}, stability ARI {_round(internal.get('stability_ari'))}",
    ]
    lab = m.get("labels")
    if lab:
        lines.append(
            f"  vs labels: ARI {lab['ari']:.3f}, NMI {lab['nmi']:.3f}, purity {lab['purity']:.3f}, "
            f"Hungarian accuracy {lab['hungarian_accuracy']:.3f}"
        )
    lines.append(f"  report: {r.output / 'report.html'}")
    return "\n".join(lines)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


FLAGS = (
    Flag("--segments", "segments", "segment_folder output folder (segments.json + codes sidecars)"),
    OUTPUT,
    Flag("--embedder", "embedder", "train_embedder run folder (LSTM) or a saved frozen Transformer"),
    Flag("--labels", "labels", "reference labels: CSV, JSON, or ground-truth segment files"),
    Flag("--features", "features", "auto | tfidf | bow | mean | lstm | transformer"),
    Flag("--local", "backend", "embed in this process without Ray", switch=True, const="local"),
    NUM_ACTORS,
)


def main(argv: list[str] | None = None) -> None:
    run_job("cluster", __doc__, FLAGS, ClusterJobConfig, run, summary_line, argv)


if __name__ == "__main__":
    main()
