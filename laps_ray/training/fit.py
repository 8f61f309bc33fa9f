"""Fitting the training loop: in this process (:func:`fit_local`) or with Ray Train (:func:`fit_with_ray`).

:func:`fit_with_ray` runs a ``TorchTrainer`` (Train V2) on the Ray cluster the caller connected to:
``num_workers`` workers of ``cpus_per_worker`` CPUs (+ GPUs when used); its controller reserves no
CPU, so 2 × 1 CPU fits a 2-core machine. Each worker runs :func:`ray_train_loop`, i.e.
:func:`laps_ray.training.loops.train_worker` with a :class:`~laps_ray.training.loops.RayIO`; rank 0's
reports reach a :class:`~laps_ray.training.report.RunRecorder` through :func:`recorder_callback`,
which runs in the controller on the driver's node, so the files land in ``--output``.

Only ``ray.train`` is imported (lazily); starting or joining Ray is the caller's (the job's) part.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from laps_ray.training.config import TrainTokenizerConfig
from laps_ray.training.loops import RayIO, WorkerSpec, run_local, train_worker
from laps_ray.training.report import CHECKPOINTS_DIR, RunRecorder

log = logging.getLogger(__name__)


class TrainingError(ValueError):
    """A training run cannot go on; the message is the one-line reason shown to the user.

    A ValueError, so a job's command line prints it as ``error: <message>`` without a traceback.
    """


def fit_local(spec: WorkerSpec, output: Path, keep: int, resume_step: int | None) -> dict[str, Any]:
    """Run the loop in this process (no Ray) and record into ``output``; returns the last epoch's metrics.

    Raises:
        TrainingError: the loss became non-finite.
    """
    try:
        return run_local(spec, RunRecorder(output, keep=keep, resume_step=resume_step))
    except FloatingPointError as exc:
        raise TrainingError(str(exc)) from exc


def fit_with_ray(
    cfg: TrainTokenizerConfig,
    spec: WorkerSpec,
    resume_step: int | None,
    use_gpu: bool,
    cluster_cpus: float,
    extra_callbacks: Sequence[Any] = (),
    loop: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """Run the ``TorchTrainer`` (Train V2) on the connected Ray cluster; returns its ``Result``.

    Args:
        cfg: the run's config (``output`` and ``storage_path`` already absolute or URIs).
        spec: what every worker gets.
        resume_step: step of the checkpoint resumed from (reports after it are dropped), or None.
        use_gpu: one ``gpus_per_worker`` per worker, nccl and AMP.
        cluster_cpus: CPUs of the cluster; a run that needs more is refused instead of waiting forever.
        extra_callbacks: more ``ray.train.UserCallback``s (a sweep trial passes Tune's).
        loop: ``train_loop_per_worker`` taking ``{"spec": spec}`` (default :func:`ray_train_loop`,
            the tokenizer's; the LSTM embedder passes its own). ``cfg`` may be any run config with
            the same resource and storage fields.

    Raises:
        TrainingError: not enough CPUs, or a worker failed (its last error line).
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    resources: dict[str, float] = {"CPU": cfg.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = cfg.gpus_per_worker
    need_cpu = cfg.num_workers * cfg.cpus_per_worker
    if need_cpu > cluster_cpus + 1e-9:
        # Ray would wait for resources forever on a fixed-size cluster.
        raise TrainingError(
            f"num_workers={cfg.num_workers} x cpus_per_worker={cfg.cpus_per_worker} needs {need_cpu:g} "
            f"CPUs but the cluster has {cluster_cpus:g}; lower num_workers or cpus_per_worker"
        )
    storage = cfg.storage_path or cfg.output
    if "://" not in storage:
        storage = str(Path(storage).resolve())
    trainer = TorchTrainer(
        loop or ray_train_loop,
        train_loop_config={"spec": spec},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=CHECKPOINTS_DIR,
            storage_path=storage,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints or None),
            # Ray Train's INFO lines repeat every report's metrics; ours come from laps_ray's loggers.
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
            callbacks=[recorder_callback(cfg.output, 0, resume_step), *extra_callbacks],
        ),
    )
    try:
        return trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise TrainingError(f"training failed: {_root_cause(exc)}") from exc


def ray_train_loop(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the ``TorchTrainer``: ``config = {"spec": WorkerSpec}``."""
    spec: WorkerSpec = config["spec"]
    if spec.settings.threads == 0:
        # Ray sets OMP_NUM_THREADS to the worker's reserved CPUs (at least 1); follow it.
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    logging.getLogger("laps_ray").setLevel(logging.INFO)
    _quiet_report_logs()
    train_worker(spec, RayIO(spec.resume_from))


def _quiet_report_logs() -> None:
    """Silence Train V2's per-report INFO line (the whole metrics dict, every report, every rank).

    Ray 2.60 logs it through ``logging.getLogger(__file__)`` of its execution context module, so
    the logger is named by that file's path; the metrics are in our ``metrics.jsonl`` anyway.
    """
    import importlib.util

    found = importlib.util.find_spec("ray.train.v2._internal.execution.context")
    if found is not None and found.origin:
        logging.getLogger(found.origin).setLevel(logging.WARNING)


def recorder_callback(output: str, keep: int = 0, resume_step: int | None = None) -> Any:
    """A ``ray.train.UserCallback`` that feeds every report to a :class:`RunRecorder` on ``output``.

    Train V2 runs callbacks in its controller actor, which is pinned to the driver's node, so the
    files land where the job's ``--output`` is.
    """
    from ray.train import UserCallback

    class RecorderCallback(UserCallback):
        def __init__(self) -> None:
            self.recorder = RunRecorder(Path(output), keep=keep, resume_step=resume_step)

        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            # Rank 0's metrics are global (the loop all-reduces them).
            self.recorder.record(
                metrics[0],
                checkpoint_ref=checkpoint.path if checkpoint is not None else None,
                materialize=checkpoint.to_directory if checkpoint is not None else None,
            )

    return RecorderCallback()


def _root_cause(exc: BaseException) -> str:
    """The last informative line of a (worker) error: usually ``SomeError: message``."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln.split(":", 1)[0] or "Exception" in ln.split(":", 1)[0]:
            return ln
    return lines[-1] if lines else type(exc).__name__
