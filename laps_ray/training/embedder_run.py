"""One LSTM embedder training run, end to end: :func:`train_embedder` (the ``train_embedder`` job's body).

In order: read every segment's code sequence (:mod:`laps_ray.io.segment_codes`), split by video,
size ``max_len`` from the training lengths; prepare the output folder (refuse to mix runs, or find the
checkpoint ``--resume`` continues); write ``config.yaml`` + ``run.json``; connect to Ray only now
(backend ``ray``); fit in this process or with a ``TorchTrainer``; write ``summary.json`` and
``curves.png``. Output layout as the tokenizer's (:mod:`laps_ray.training.report`): ``metrics.jsonl``,
``checkpoints/epoch_XXXX/``, ``latest``, ``best/`` (lowest held-out next-token loss).

Starting Ray is the job's part (``connect``); this layer imports only ``ray.train``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from laps_ray.config import check
from laps_ray.core.sequence_features import max_len_from_lengths
from laps_ray.io.atomic import atomic_path, prepare_output_dir, write_json_atomic
from laps_ray.io.run_manifest import RunManifest
from laps_ray.io.segment_codes import find_segments, read_sequence
from laps_ray.io.track_store import split_by_video
from laps_ray.models.embedder import EmbedderConfig
from laps_ray.training.embedder_config import TrainEmbedderConfig
from laps_ray.training.embedder_loop import EmbedderSpec, embedder_train_loop, run_embedder_local
from laps_ray.training.fit import TrainingError, fit_with_ray
from laps_ray.training.report import (
    CURVES_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    RunRecorder,
    epoch_records,
    read_metrics,
    summarize,
)
from laps_ray.training.run import TrainResult, prepare_output, use_gpu_for

log = logging.getLogger(__name__)


EmbedderTrainResult = TrainResult  # the same record as a tokenizer run's


def load_sequences(segments: str | Path) -> tuple[dict[str, list[np.ndarray]], int, int]:
    """``({video folder: [code sequence, ...]}, true code count, empty segments skipped)``."""
    refs, num_codes = find_segments(segments)
    by_video: dict[str, list[np.ndarray]] = {}
    empty = 0
    for ref in refs:
        seq, _ = read_sequence(ref, with_vectors=False)
        if len(seq) < 2:
            empty += 1  # nothing to predict from fewer than two tokens
            continue
        by_video.setdefault(ref.video_dir, []).append(seq)
    return by_video, num_codes, empty


def train_embedder(
    cfg: TrainEmbedderConfig, *, connect: Callable[[], Mapping[str, float]], command: str | None = None
) -> EmbedderTrainResult:
    """Train (or continue) the LSTM embedder on Ray Train (``backend=ray``) or in this process.

    Raises:
        laps_ray.config.ConfigError: ``segments`` or ``output`` missing.
        FileNotFoundError: no segments.json under ``segments``.
        TrainingError: no sequences, an output folder holding another run or nothing to resume,
            too few CPUs, or the training failed.
    """
    check(bool(cfg.segments), "segments", "is required (--segments DIR: a segment_folder output)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    t0 = time.time()
    output = Path(cfg.output).resolve()
    cfg = dataclasses.replace(cfg, segments=str(Path(cfg.segments).resolve()), output=str(output))
    by_video, num_codes, empty = load_sequences(cfg.segments)
    if not by_video:
        raise TrainingError(f"{cfg.segments}: no segment has a code sequence of 2 or more tokens")
    train_dirs, val_dirs = split_by_video([Path(v) for v in by_video], cfg.val_fraction, cfg.seed)
    train = [s for d in train_dirs for s in by_video[str(d)]]
    val = [s for d in val_dirs for s in by_video[str(d)]]
    lengths = [len(s) for s in train]
    max_len = cfg.max_len or max_len_from_lengths(
        lengths, cfg.max_len_percentile, cfg.max_len_multiple, cfg.max_len_cap
    )
    truncated = float(np.mean([n > max_len for n in lengths]))
    model = EmbedderConfig(
        num_codes=num_codes,
        max_len=max_len,
        embed_dim=cfg.model.embed_dim,
        num_layers=cfg.model.num_layers,
        dropout=cfg.model.dropout,
    )
    if not val:
        log.warning("no validation videos: early stopping and best/ use the training loss")
    prepare_output_dir(output)
    resume_from, resume_step = prepare_output(output, cfg)
    data = {
        "train_videos": [d.name for d in train_dirs],
        "val_videos": [d.name for d in val_dirs],
        "train_sequences": len(train),
        "val_sequences": len(val),
        "skipped_short_segments": empty,
        "num_codes": num_codes,
        "max_len": max_len,
        "truncated_fraction": round(truncated, 4),
        "length_percentiles": {str(p): float(np.percentile(lengths, p)) for p in (10, 50, 90, 98, 100)},
    }
    manifest = RunManifest.create(output, "train_embedder", cfg, command=command, data=data)
    resources = connect() if cfg.backend == "ray" else None
    use_gpu = use_gpu_for(cfg, resources)
    spec = EmbedderSpec(cfg, model, train, val, resume_from, {"command": command, **data}, use_gpu)
    log.info(
        "training the LSTM embedder on %d sequences (%d videos), validating on %d (%d videos); "
        "max_len %d (%.1f%% truncated), %d codes, backend=%s",
        len(train),
        len(train_dirs),
        len(val),
        len(val_dirs),
        max_len,
        100 * truncated,
        num_codes,
        cfg.backend,
    )
    try:
        if resources is None:
            run_embedder_local(spec, RunRecorder(output, keep=cfg.keep_checkpoints, resume_step=resume_step))
        else:
            cpus = float(resources.get("CPU", 0))
            fit_with_ray(cfg, spec, resume_step, use_gpu, cpus, loop=embedder_train_loop)
    except FloatingPointError as exc:
        raise TrainingError(str(exc)) from exc
    seconds = time.time() - t0
    reports = read_metrics(output)
    try:
        summary = summarize(reports, output)
    except ValueError as exc:
        raise TrainingError(f"{output / METRICS_FILE}: {exc}") from exc
    for key in ("codebook", "collapse_warning", "collapse_warning_epochs"):
        summary.pop(key, None)  # tokenizer-only fields of the shared summary
    summary.update(
        early_stopped=bool(summary["final"].get("early_stop")),
        data=data,
        backend=cfg.backend,
        wall_seconds=round(seconds, 1),
        command=command,
    )
    write_json_atomic(output / SUMMARY_FILE, summary)
    plot_embedder_curves(reports, output / CURVES_FILE)
    manifest.extra["summary"] = {
        k: summary[k] for k in ("epochs_completed", "steps", "best", "early_stopped")
    }
    manifest.write(finished=True)
    workers = cfg.num_workers if cfg.backend == "ray" else 1
    return EmbedderTrainResult(output, summary, seconds, cfg.backend, workers, use_gpu)


def plot_embedder_curves(reports: list[dict[str, Any]], path: str | Path) -> None:
    """Two panels vs epoch: next-token loss (train, val) and accuracy (train, val); best epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = epoch_records(reports)
    if not epochs:
        raise ValueError("nothing to plot: no epoch report")
    ep = [r["epoch"] for r in epochs]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, name in zip(axes, ("loss", "accuracy")):
        for split, style in (("train", "o-"), ("val", "s-")):
            ys = [r.get(f"{split}/{name}") for r in epochs]
            if any(y is not None for y in ys):
                ax.plot(ep, [float("nan") if y is None else y for y in ys], style, label=split)
        ax.set(xlabel="epoch", ylabel=f"next-token {name}", title=f"next-token {name}")
        ax.grid(alpha=0.3)
        ax.legend()
    scored = [(r.get("val/loss", r.get("train/loss")), r["epoch"]) for r in epochs]
    best = min((s for s in scored if s[0] is not None), default=None)
    if best is not None:
        axes[0].axvline(best[1], color="gray", ls="--", lw=1)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
