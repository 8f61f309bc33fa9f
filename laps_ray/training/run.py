"""One tokenizer training run, end to end: :func:`train`.

Used by the ``train_tokenizer`` job and by every ``sweep_codebook`` trial. In order: check the inputs
and split the track files by video; prepare the output folder (refuse to mix a new run into an old
one, or find the checkpoint ``--resume`` continues from); write ``config.yaml`` + ``run.json``;
connect to Ray (backend ``ray``) only now, after every input was checked; fit in this process or
with Ray Train (:mod:`laps_ray.training.fit`); write ``summary.json`` + ``curves.png`` and finish
``run.json``. The output folder's layout is in :mod:`laps_ray.training.report`.

Starting or joining Ray belongs to the job layer, which passes it in (``connect``); this layer
imports no ``ray`` itself.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from laps_ray.config import ConfigError, check, to_dict
from laps_ray.io.atomic import prepare_output_dir
from laps_ray.io.checkpoints import CheckpointError, read_meta
from laps_ray.io.run_manifest import RunManifest
from laps_ray.training.config import TrainTokenizerConfig
from laps_ray.training.data import split_files
from laps_ray.training.fit import TrainingError, fit_local, fit_with_ray
from laps_ray.training.loops import WorkerSpec
from laps_ray.training.report import (
    CHECKPOINTS_DIR,
    LATEST_FILE,
    METRICS_FILE,
    latest_checkpoint,
    write_summary,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        output: the run's output folder (absolute).
        summary: the content of ``summary.json``.
        seconds: wall time of the whole run, in seconds.
        backend: ``ray`` or ``local``.
        num_workers: training processes (1 in-process).
        use_gpu: whether the workers trained on GPUs.
        exit_code: the job's exit status (0).
    """

    output: Path
    summary: dict[str, Any]
    seconds: float
    backend: str
    num_workers: int
    use_gpu: bool
    exit_code: int = 0


def train(
    cfg: TrainTokenizerConfig,
    *,
    connect: Callable[[], Mapping[str, float]],
    command: str | None = None,
    extra_callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train (or continue training) the tokenizer on Ray Train (``backend=ray``) or in this process.

    Args:
        cfg: the run's config.
        connect: starts or joins Ray and returns the cluster's resources (``{"CPU": 2.0, "GPU": 0.0}``);
            called once the inputs are checked, for ``backend=ray`` only.
        command: the command line, recorded in every checkpoint's ``meta.json`` and the summary.
        extra_callbacks: more ``ray.train.UserCallback``s (a sweep trial passes Tune's).

    Raises:
        laps_ray.config.ConfigError: ``tracks`` or ``output`` missing.
        FileNotFoundError: no track files.
        laps_ray.io.atomic.OutputDirError: the output folder cannot be created or written.
        TrainingError: no training videos, an output folder that holds another run or nothing to
            resume, no GPU for ``use_gpu=true``, too few CPUs, or the training itself failed.
    """
    check(bool(cfg.tracks), "tracks", "is required (--tracks DIR of .h5 files from the preprocess job)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    t0 = time.time()
    tracks, output = Path(cfg.tracks).resolve(), Path(cfg.output).resolve()
    # Absolute paths: Ray Train workers run in their own working directories.
    cfg = dataclasses.replace(cfg, tracks=str(tracks), output=str(output))
    if cfg.init_from and not cfg.resume:
        cfg = with_init_model(cfg)
    train_files, val_files = split_files(tracks, cfg.val_fraction, cfg.seed)
    if not train_files:
        raise TrainingError(f"{tracks}: no training videos left after the validation split")
    if not val_files:
        log.warning(
            "no validation videos (%d track file(s), val_fraction=%s): val metrics are missing and best/ is "
            "the lowest *training* loss",
            len(train_files),
            cfg.val_fraction,
        )
    prepare_output_dir(output)  # a one-line error before anything is written or deleted
    resume_from, resume_step = prepare_output(output, cfg)
    manifest = RunManifest.create(
        output,
        "train_tokenizer",
        cfg,
        command=command,
        split={"train": [p.name for p in train_files], "val": [p.name for p in val_files]},
        resume_from=resume_from,
    )
    resources = connect() if cfg.backend == "ray" else None
    use_gpu = use_gpu_for(cfg, resources)
    workers = cfg.num_workers if cfg.backend == "ray" else 1
    spec = WorkerSpec(
        settings=cfg,
        train_files=[str(p) for p in train_files],
        val_files=[str(p) for p in val_files],
        resume_from=resume_from,
        meta={
            "command": command,
            "tracks": str(tracks),
            "train_videos": [p.name for p in train_files],
            "val_videos": [p.name for p in val_files],
            "init_from": cfg.init_from or None,
        },
        use_gpu=use_gpu,
    )
    log.info(
        "training '%s' (codebook %d) on %d train / %d val videos, %d epochs, backend=%s, "
        "%d worker(s), gpu=%s",
        cfg.model.name,
        cfg.model.codebook_size,
        len(train_files),
        len(val_files),
        cfg.epochs,
        cfg.backend,
        workers,
        use_gpu,
    )
    if resources is None:
        fit_local(spec, output, cfg.keep_checkpoints, resume_step)
    else:
        cpus = float(resources.get("CPU", 0))
        fit_with_ray(cfg, spec, resume_step, use_gpu, cpus, extra_callbacks)
    seconds = time.time() - t0
    try:
        summary = write_summary(
            output,
            extra={
                "command": command,
                "backend": cfg.backend,
                "num_workers": workers,
                "use_gpu": use_gpu,
                "wall_seconds": round(seconds, 1),
                "model": cfg.model.name,
            },
        )
    except ValueError as exc:
        raise TrainingError(f"{output / METRICS_FILE}: {exc}") from exc
    if summary.get("collapse_warning"):
        log.warning("%s", summary["collapse_warning"])
    manifest.extra["summary"] = {k: summary[k] for k in ("epochs_completed", "steps", "best", "codebook")}
    manifest.write(finished=True)
    return TrainResult(output, summary, seconds, cfg.backend, workers, use_gpu)


# Model settings that do not change the weights' shapes: a fine-tuning run may set its own. That
# includes motion_input: a checkpoint trained on every point's velocity can learn the foreground
# (the train_tokenizer.yaml default) by fine-tuning; the switch is logged.
TRAINING_ONLY_MODEL_KEYS = ("name", "dropout", "z_noise_std", "motion_input")


def with_init_model(cfg: TrainTokenizerConfig) -> TrainTokenizerConfig:
    """The run's config for fine-tuning from ``cfg.init_from``: its path resolved (``shipped`` = the
    package's default checkpoint) and the model config taken from that checkpoint.

    Raises:
        laps_ray.config.ConfigError: the checkpoint cannot be read, or ``model.*`` settings that shape
            the weights differ from the checkpoint's (the message lists them).
    """
    from laps_ray.io.checkpoints import verify_tokenizer
    from laps_ray.pipeline.resolve import named_checkpoint

    path = named_checkpoint(cfg.init_from).resolve()
    try:
        saved = verify_tokenizer(path)
    except (CheckpointError, FileNotFoundError) as exc:
        raise ConfigError(f"init_from: {exc}") from exc
    ours, theirs = to_dict(cfg.model), to_dict(saved)
    differ = [k for k in ours if k not in TRAINING_ONLY_MODEL_KEYS and ours[k] != theirs.get(k)]
    if differ:
        pairs = ", ".join(f"model.{k}={ours[k]} vs {theirs.get(k)}" for k in differ)
        raise ConfigError(
            f"init_from: {path} has another architecture ({pairs}); drop those model settings "
            "(a fine-tuning run takes the model from its checkpoint) or train from scratch"
        )
    if ours["motion_input"] != saved.motion_input:
        log.info(
            "init_from: %s was trained on motion_input=%s; this run trains it on %s",
            path,
            saved.motion_input,
            ours["motion_input"],
        )
    model = dataclasses.replace(saved, **{k: ours[k] for k in TRAINING_ONLY_MODEL_KEYS})
    return dataclasses.replace(cfg, model=model, init_from=str(path))


def prepare_output(output: Path, cfg: Any) -> tuple[str | None, int | None]:
    """``(checkpoint to resume from, its step)`` for ``--resume``; refuse to mix a new run into an old one.

    ``cfg`` is any training run's config with ``resume`` and ``storage_path`` (the tokenizer's and
    the embedder's runs share this rule).
    """
    storage = Path(cfg.storage_path) if cfg.storage_path and "://" not in cfg.storage_path else output
    ckpts = storage / CHECKPOINTS_DIR
    earlier = (
        (output / METRICS_FILE).exists()
        or (output / LATEST_FILE).exists()
        or (ckpts.is_dir() and any(ckpts.iterdir()))
    )
    if not cfg.resume:
        if earlier:
            raise TrainingError(
                f"{output} already holds a training run ({METRICS_FILE}, {CHECKPOINTS_DIR}/); "
                "pass --resume to continue it, or choose a new --output"
            )
        return None, None
    latest = latest_checkpoint(output)
    if latest is None:
        raise TrainingError(
            f"{output}: nothing to resume (no '{LATEST_FILE}' checkpoint pointer); drop --resume"
        )
    if "://" in latest:
        return latest, None  # remote storage: Ray restores it (ray.train.get_checkpoint)
    try:
        step = int(read_meta(latest)["step"])
    except (CheckpointError, KeyError, TypeError, ValueError) as exc:
        raise TrainingError(f"{latest}: cannot resume from this checkpoint ({exc})") from exc
    log.info("resuming from %s (step %d)", latest, step)
    return latest, step


def use_gpu_for(cfg: Any, resources: Mapping[str, float] | None) -> bool:
    """Whether to train on GPUs: ``cfg.use_gpu`` against the cluster's GPUs (in-process: this machine's)."""
    if cfg.use_gpu == "false":
        return False
    if resources is None:
        import torch

        have = torch.cuda.is_available()
    else:
        have = float(resources.get("GPU", 0)) > 0
    if cfg.use_gpu == "true" and not have:
        raise TrainingError("use_gpu=true but no GPU is available (use_gpu=auto trains on CPU then)")
    return have
