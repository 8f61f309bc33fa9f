r"""train_tokenizer: point tracks (HDF5 from the preprocess job) → a trained motion tokenizer, with Ray Train.

Local (starts or joins a Ray instance on this machine; ``--address local`` forces a private one)::

    python -m laps_ray.jobs.train_tokenizer --tracks tracks/ --output runs/tok [model=small] [key=value ...]

On a cluster (same command after ``--``; ``--tracks`` and ``--output`` must be on storage every node
sees, e.g. NFS, because each worker reads the track files and the checkpoints are written there)::

    ray job submit --working-dir . -- \
        python -m laps_ray.jobs.train_tokenizer --tracks /shared/tracks --output /shared/runs/tok

Continue the same run from its latest epoch checkpoint (step count, epoch, optimiser, schedule and
GradScaler state are restored; raise ``epochs`` to train longer)::

    python -m laps_ray.jobs.train_tokenizer --tracks tracks/ --output runs/tok --resume epochs=40

Fine-tune on a new domain, starting from the shipped checkpoint (or any checkpoint directory; the
model config is the checkpoint's, the optimiser and schedule start afresh)::

    python -m laps_ray.jobs.train_tokenizer --tracks my_tracks/ --output runs/ft --init shipped epochs=6

**Config** (``--config configs/train_tokenizer.yaml``, then ``key=value`` overrides): ``model=NAME``
picks a named size (``tiny``, ``small``, ``paper``) and ``model.<field>=...`` overrides apply after
it; ``loss.*`` (focal, radial weights, differentiable codebook-usage term), ``optim.*`` (AdamW ``lr``,
``betas``, ``weight_decay``, ``grad_clip`` (1.0), ``warmup_fraction``, ``min_lr_ratio``: linear
warm-up then cosine, stepped per step), ``epochs``, ``batch_size`` (per worker), ``val_fraction`` +
``seed`` (held-out *videos*), ``log_every_steps``, ``num_workers`` (2), ``cpus_per_worker`` (1),
``use_gpu`` (``auto``: when the cluster has GPUs; then nccl and AMP ``amp_dtype``), ``storage_path``
(default: ``--output``), ``keep_checkpoints`` (0 = all), ``backend`` (``ray``, or ``local`` = the same
loop in this process without Ray, also ``--local``).
``init_input_std`` (1.0): a fresh run scales the encoder's input layer on a sample of training
windows so the small normalised velocities are not drowned by the position embedding (without it
the codebook collapsed on the sample videos; ``laps_ray/assets/README.md``). ``sampling`` (``uniform``
or ``motion``: windows drawn in proportion to ``sampling_floor`` + their share of moving steps),
``init_from`` (``--init``: fine-tune from a checkpoint).

**Ray Train.** A ``TorchTrainer`` (Train V2) with ``num_workers`` workers of ``cpus_per_worker`` CPUs
(+ 1 GPU each when used); its controller reserves no CPU, so 2 × 1 CPU fits a 2-core machine. gloo
on CPU, nccl on GPU. Each worker loads the windows of the split from the track files and takes a
disjoint shard every epoch (DistributedSampler-style); metric sums are all-reduced, so rank 0's
reports are global; every rank reports the same number of times; rank 0 attaches the epoch checkpoint.
The run itself (output folder and resume, manifest, fit, summary) is
:func:`laps_ray.training.run.train`; this module adds the command line and starts or joins Ray.

**Outputs** (``--output DIR``): ``metrics.jsonl`` (one line per report: ``train/loss``,
``train/accuracy``, ``train/epe_px``, ``val/loss``, and AMPLIFY's reconstruction measures
(``laps_ray.models.recon_metrics``): ``val/accuracy``, ``val/accuracy_moving`` (true displacement
≥ 0.5 px; ``val/accuracy_moving_ceiling`` is what rounding the exact displacement scores there),
``val/epe_px`` (endpoint error in pixels), ``val/delta_auc``, ``val/pixel_accuracy``,
``val/static_pred_share`` vs ``val/static_true_share``; then ``val/perplexity``, ``val/entropy_norm``,
``val/unique_codes``, ``val/usage_ratio``, ``val/dead_code_ratio`` (against the TRUE code count, 1920
for 2048), ``collapse_warning``, ``lr``, ``step``, ``epoch``, ...), ``checkpoints/epoch_XXXX/`` (every
epoch; with ``train_state.pt``), ``latest`` (pointer), ``best/`` (lowest ``val/loss``; load it with
``laps_ray.io.checkpoints.load_tokenizer``), ``summary.json``, ``curves.png``, ``config.yaml``,
``run.json``. A codebook collapse (unique codes < 5 % of the true count for two epochs) is logged as
a WARNING and written to the metrics, the summary and the last line printed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import Flag, run_job
from laps_ray.training.config import TrainTokenizerConfig, load_train_config
from laps_ray.training.report import CURVES_FILE, METRICS_FILE, SUMMARY_FILE

if TYPE_CHECKING:
    from laps_ray.training.run import TrainResult


def run(cfg: TrainTokenizerConfig, command: str | None = None) -> TrainResult:
    """Train on Ray (``backend=ray``: joins or starts Ray once the inputs are checked) or in-process.

    Args:
        cfg: the job config (``configs/train_tokenizer.yaml`` keys).
        command: the command line, recorded in every checkpoint's ``meta.json`` and the summary.
    """
    from laps_ray.training.run import train

    return train(cfg, connect=_connect_ray, command=command)


def _connect_ray() -> dict[str, float]:
    """Join or start Ray (:func:`laps_ray.jobs._runtime.init_ray`) and return the cluster's resources."""
    import ray

    rt.init_ray()
    return ray.cluster_resources()


def summary_line(r: TrainResult) -> str:
    """The lines printed at the end: outputs, best epoch, codebook health, and any collapse warning."""
    s = r.summary
    best = s.get("best") or {}
    cb = s.get("codebook") or {}
    where = (
        f"{r.num_workers} worker(s), {'gpu' if r.use_gpu else 'cpu'}" if r.backend == "ray" else "in-process"
    )
    head = (
        f"train_tokenizer: {s['epochs_completed']} epoch(s), step {s['steps']} in {r.seconds:.1f}s ({where}) "
        f"-> {r.output}"
    )
    lines = [head]
    if best:
        lines.append(
            f"  best epoch {best['epoch']}: {best['score_key']} {best['score']:.4f} -> {r.output / 'best'}"
        )
    final = s.get("final", {})
    split = cb.get("split")
    acc, epe = final.get(f"{split}/accuracy"), final.get(f"{split}/epe_px")
    if cb.get("unique_codes") is not None:
        lines.append(
            f"  codebook ({cb['split']}, last epoch): {cb['unique_codes']}/{cb['true_codebook_size']} "
            "codes used "
            f"({100 * (cb['usage_ratio'] or 0):.1f}%), perplexity {cb['perplexity']:.1f}"
            + (
                f", accuracy {acc:.3f}, endpoint error {epe:.2f}px"
                if acc is not None and epe is not None
                else ""
            )
        )
    keys = ("accuracy_moving", "accuracy_moving_ceiling", "delta_auc", "static_pred_share")
    recon = [final.get(f"{split}/{k}") for k in keys]
    if all(v is not None for v in recon):
        lines.append(
            f"  motion ({split}): accuracy on moving points {recon[0]:.3f} (exact displacement rounded: "
            f"{recon[1]:.3f}), ΔAUC {recon[2]:.3f}, "
            f'"no motion" predicted {recon[3]:.3f} vs true {final.get(f"{split}/static_true_share", 0):.3f}'
        )
    lines.append(f"  {METRICS_FILE}, {SUMMARY_FILE}, {CURVES_FILE} in {r.output}")
    if s.get("collapse_warning"):
        lines.append(f"WARNING: {s['collapse_warning']}")
    return "\n".join(lines)


FLAGS = (
    Flag("--tracks", "tracks", "folder of .h5 track files (from the preprocess job)"),
    Flag("--output", "output", "output folder (checkpoints, metrics, summary)"),
    Flag("--resume", "resume", "continue from <output>/latest", switch=True),
    Flag("--init", "init_from", "fine-tune: start from this checkpoint dir ('shipped' = the default one)"),
    Flag("--local", "backend", "train in this process without Ray", switch=True, const="local"),
    Flag("--num-workers", "num_workers", "Ray Train workers (default 2)", type=int),
    Flag("--epochs", "epochs", "epochs (default from the config)", type=int),
)


def main(argv: list[str] | None = None) -> None:
    run_job(
        "train_tokenizer",
        __doc__,
        FLAGS,
        TrainTokenizerConfig,
        run,
        summary_line,
        argv,
        load=load_train_config,
        record_command=True,
    )


if __name__ == "__main__":
    main()
