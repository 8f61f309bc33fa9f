r"""train_embedder: segments' latent action codes → an LSTM sequence embedder, with Ray Train.

Local (starts or joins a Ray instance on this machine; ``--local`` trains in this process)::

    python -m laps_ray.jobs.train_embedder --segments out/ --output runs/emb [key=value ...]

On a cluster (``--segments`` read on the driver; ``--output`` on storage every node sees)::

    ray job submit --working-dir . -- \
        python -m laps_ray.jobs.train_embedder --segments /shared/out --output /shared/runs/emb

Continue a run from its latest epoch checkpoint (raise ``epochs`` to train longer)::

    python -m laps_ray.jobs.train_embedder --segments out/ --output runs/emb --resume epochs=80

**Model.** A causal (unidirectional) LSTM over the segment's code sequence (overlapping windows'
steps once, tokens = code + 1, padding 0) trained by next-token prediction; the embedding is the
masked mean of its top-layer hidden states (``laps_ray.models.embedder``). ``max_len`` = the 98th
percentile of the training lengths rounded up to 16 (``max_len=N`` fixes it).

**Config** (``--config configs/train_embedder.yaml``): ``model.{embed_dim,num_layers,dropout}``,
``optim.*`` (the tokenizer's AdamW + warm-up/cosine), ``epochs``, ``batch_size``, ``val_fraction`` +
``seed`` (held-out VIDEOS), ``patience`` / ``min_delta`` (class-free early stopping on their
next-token loss), ``backend`` (``ray`` | ``local``), ``num_workers`` (1), ``cpus_per_worker``,
``use_gpu`` (``auto``: nccl on GPUs, else gloo), ``storage_path``, ``keep_checkpoints``.

**Outputs** (``--output DIR``): ``metrics.jsonl`` (per epoch: ``train/loss``, ``train/accuracy``,
``train/perplexity``, ``val/...``, ``early_stop``), ``checkpoints/epoch_XXXX/`` (safetensors +
``config.yaml`` + ``meta.json`` + ``train_state.pt``), ``latest``, ``best/`` (lowest ``val/loss``; pass
the run folder to ``cluster --embedder``), ``summary.json``, ``curves.png``, ``config.yaml``, ``run.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import Flag, run_job
from laps_ray.training.embedder_config import TrainEmbedderConfig

if TYPE_CHECKING:
    from laps_ray.training.embedder_run import EmbedderTrainResult


def run(cfg: TrainEmbedderConfig, command: str | None = None) -> EmbedderTrainResult:
    """Train on Ray (joins or starts Ray once the inputs are checked) or in this process."""
    from laps_ray.training.embedder_run import train_embedder

    return train_embedder(cfg, connect=_connect_ray, command=command)


def _connect_ray() -> dict[str, float]:
    import ray

    rt.init_ray()
    return ray.cluster_resources()


def summary_line(r: EmbedderTrainResult) -> str:
    """Where the outputs went, the best epoch and whether training stopped early."""
    s = r.summary
    best = s.get("best") or {}
    where = (
        f"{r.num_workers} worker(s), {'gpu' if r.use_gpu else 'cpu'}" if r.backend == "ray" else "in-process"
    )
    lines = [
        f"train_embedder: {s['epochs_completed']} epoch(s)"
        f"{' (early stop)' if s.get('early_stopped') else ''}, "
        f"step {s['steps']} in {r.seconds:.1f}s ({where}) -> {r.output}"
    ]
    if best:
        lines.append(
            f"  best epoch {best['epoch']}: {best['score_key']} {best['score']:.4f} -> {r.output / 'best'}"
        )
    lines.append(f"  metrics.jsonl, summary.json, curves.png in {r.output}")
    return "\n".join(lines)


FLAGS = (
    Flag("--segments", "segments", "segment_folder output folder (segments.json + codes sidecars)"),
    Flag("--output", "output", "output folder (checkpoints, metrics, summary)"),
    Flag("--resume", "resume", "continue from <output>/latest", switch=True),
    Flag("--local", "backend", "train in this process without Ray", switch=True, const="local"),
    Flag("--num-workers", "num_workers", "Ray Train workers (default 1)", type=int),
    Flag("--epochs", "epochs", "most epochs (early stopping may end sooner)", type=int),
)


def main(argv: list[str] | None = None) -> None:
    run_job(
        "train_embedder", __doc__, FLAGS, TrainEmbedderConfig, run, summary_line, argv, record_command=True
    )


if __name__ == "__main__":
    main()
