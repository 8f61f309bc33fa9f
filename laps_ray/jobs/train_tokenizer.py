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
the codebook collapsed on the sample videos; ``laps_ray/assets/README.md``).

**Ray Train.** A ``TorchTrainer`` (Train V2) with ``num_workers`` workers of ``cpus_per_worker`` CPUs
(+ 1 GPU each when used); its controller reserves no CPU, so 2 × 1 CPU fits a 2-core machine. gloo
on CPU, nccl on GPU. Each worker loads the windows of the split from the track files and takes a
disjoint shard every epoch (DistributedSampler-style); metric sums are all-reduced, so rank 0's
reports are global; every rank reports the same number of times; rank 0 attaches the epoch checkpoint.

**Outputs** (``--output DIR``): ``metrics.jsonl`` (one line per report: ``train/loss``,
``train/accuracy``, ``train/epe_px``, ``val/loss``, ``val/accuracy``, ``val/accuracy_moving``,
``val/epe_px`` (endpoint error in pixels), ``val/perplexity``, ``val/entropy_norm``,
``val/unique_codes``, ``val/usage_ratio``, ``val/dead_code_ratio`` (against the TRUE code count, 1920
for 2048), ``collapse_warning``, ``lr``, ``step``, ``epoch``, ...), ``checkpoints/epoch_XXXX/`` (every
epoch; with ``train_state.pt``), ``latest`` (pointer), ``best/`` (lowest ``val/loss``; load it with
``laps_ray.io.checkpoints.load_tokenizer``), ``summary.json``, ``curves.png``, ``config.yaml``,
``run.json``. A codebook collapse (unique codes < 5 % of the true count for two epochs) is logged as
a WARNING and written to the metrics, the summary and the last line printed.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from laps_ray.actors.pool import cluster_gpus
from laps_ray.config import ConfigError, check, check_choice, load_config
from laps_ray.io.run_manifest import RunManifest
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import Flag, run_job
from laps_ray.models.tokenizer_config import TokenizerConfig, named_config, named_config_names
from laps_ray.training.loops import TrainSettings, WorkerSpec
from laps_ray.training.report import (
    CHECKPOINTS_DIR,
    CURVES_FILE,
    LATEST_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    latest_checkpoint,
)

log = logging.getLogger("laps_ray.train_tokenizer")

BACKENDS = ("ray", "local")
GPU_CHOICES = ("auto", "true", "false")


@dataclasses.dataclass
class TrainTokenizerConfig(TrainSettings):
    """Settings of the train_tokenizer job (``configs/train_tokenizer.yaml``); see the module docstring.

    Attributes (besides :class:`~laps_ray.training.loops.TrainSettings`):
        tracks: folder of ``.h5`` track files (searched recursively).
        output: output folder.
        resume: continue from ``<output>/latest`` (``--resume``).
        backend: ``ray`` (TorchTrainer) or ``local`` (same loop in this process, no Ray).
        num_workers: Ray Train workers.
        cpus_per_worker: CPUs reserved per worker (also its torch thread count).
        use_gpu: ``auto`` (if the cluster has GPUs), ``true`` or ``false``.
        gpus_per_worker: GPUs per worker when GPUs are used.
        storage_path: Ray Train storage (checkpoints land in ``<storage_path>/checkpoints/``); empty =
            ``output``. Must be shared storage on a multi-node cluster.
        keep_checkpoints: keep the newest N epoch checkpoints (0 = all); ``best/`` is kept apart.
    """

    tracks: str = ""
    output: str = ""
    resume: bool = False
    backend: str = "ray"
    num_workers: int = 2
    cpus_per_worker: float = 1.0
    use_gpu: str = "auto"
    gpus_per_worker: float = 1.0
    storage_path: str = ""
    keep_checkpoints: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.backend, BACKENDS, "backend")
        check_choice(self.use_gpu, GPU_CHOICES, "use_gpu")
        check(self.num_workers >= 1, "num_workers", f"must be >= 1, got {self.num_workers}")
        check(self.cpus_per_worker > 0, "cpus_per_worker", f"must be > 0, got {self.cpus_per_worker}")
        check(self.gpus_per_worker > 0, "gpus_per_worker", f"must be > 0, got {self.gpus_per_worker}")
        check(self.keep_checkpoints >= 0, "keep_checkpoints", f"must be >= 0, got {self.keep_checkpoints}")


@dataclasses.dataclass
class TrainResult:
    output: Path
    summary: dict[str, Any]
    seconds: float
    backend: str
    num_workers: int
    use_gpu: bool
    exit_code: int = 0


# --------------------------------------------------------------------------------------------
# config: model=NAME


def resolve_model_name(
    config_path: str | Path | None, overrides: Sequence[str], key: str = "model"
) -> tuple[str | None, list[str]]:
    """Find the named model size chosen by ``key=NAME`` / ``key.name=NAME`` or the YAML file.

    Returns ``(name or None, overrides)`` with ``key=NAME`` rewritten to ``key.name=NAME`` so that the
    remaining overrides can be merged over a base built from :func:`named_config`.

    Raises:
        ConfigError: ``key=NAME`` with an unknown name, or ``key:`` given as a string in the YAML file.
    """
    name: str | None = None
    out: list[str] = []
    for item in overrides:
        k, sep, v = item.partition("=")
        value = v.strip().strip("'\"")
        if sep and k.strip() == key:
            if value not in named_config_names():
                raise ConfigError(
                    f"config key '{key}': unknown model {value!r}; valid names are {named_config_names()}",
                    key=key,
                )
            name = value
            out.append(f"{key}.name={value}")
            continue
        if sep and k.strip() == f"{key}.name":
            name = value
        out.append(item)
    if name is None and config_path is not None:
        try:
            data = yaml.safe_load(Path(config_path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            data = {}  # load_config reports unreadable files with the reason
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, str):
            raise ConfigError(
                f"config file {str(config_path)!r}: key '{key}' must be a mapping, "
                f"e.g. '{key}: {{name: {node}}}'"
                f" (or pass {key}={node} on the command line)",
                key=key,
            )
        if isinstance(node, dict) and node.get("name") is not None:
            name = str(node["name"])
    return name, out


def model_for_name(name: str | None, default: TokenizerConfig) -> TokenizerConfig:
    """The base model config for a name: the named size, or ``default`` relabelled for other names."""
    if name is None:
        return default
    if name in named_config_names():
        return named_config(name)
    return dataclasses.replace(default, name=name)


def load_job_config(
    config_path: str | Path | None, overrides: Sequence[str], flags: dict[str, Any] | None = None
) -> TrainTokenizerConfig:
    """Defaults → named model → YAML file → flags → ``key=value`` overrides."""
    name, rest = resolve_model_name(config_path, list(overrides))
    base = TrainTokenizerConfig(model=model_for_name(name, TrainTokenizerConfig().model))
    flag_items = [f"{k}={override_value(v)}" for k, v in (flags or {}).items() if v is not None]
    return load_config(TrainTokenizerConfig, config_path, flag_items + rest, base=base)


def override_value(v: Any) -> str:
    """A flag value as a ``key=value`` override (paths and strings quoted)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, Path)):
        text = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'
    return str(v)


# --------------------------------------------------------------------------------------------
# run


def run(
    cfg: TrainTokenizerConfig, command: str | None = None, extra_callbacks: Sequence[Any] = ()
) -> TrainResult:
    """Train on an initialised Ray (``backend=ray``) or in this process (``backend=local``).

    Args:
        cfg: the job config.
        command: the command line, recorded in every checkpoint's ``meta.json`` and the summary.
        extra_callbacks: more ``ray.train.UserCallback``s (the codebook sweep passes Tune's).
    """
    from laps_ray.training.data import split_files
    from laps_ray.training.report import RunRecorder, write_summary

    check(bool(cfg.tracks), "tracks", "is required (--tracks DIR of .h5 files from the preprocess job)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    t0 = time.time()
    tracks, output = Path(cfg.tracks).resolve(), Path(cfg.output).resolve()
    # Absolute paths: Ray Train workers run in their own working directories.
    cfg = dataclasses.replace(cfg, tracks=str(tracks), output=str(output))
    train_files, val_files = split_files(tracks, cfg.val_fraction, cfg.seed)
    if not train_files:
        raise rt.JobError(f"{tracks}: no training videos left after the validation split")
    if not val_files:
        log.warning(
            "no validation videos (%d track file(s), val_fraction=%s): val metrics are missing and best/ is "
            "the lowest *training* loss",
            len(train_files),
            cfg.val_fraction,
        )
    rt.prepare_output_dir(output)
    resume_from, resume_step = _prepare_output(output, cfg)
    manifest = RunManifest.create(
        output,
        "train_tokenizer",
        cfg,
        command=command,
        split={"train": [p.name for p in train_files], "val": [p.name for p in val_files]},
        resume_from=resume_from,
    )
    if cfg.backend == "ray":
        rt.init_ray()  # after every input was checked
    use_gpu = _use_gpu(cfg)
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
        cfg.num_workers if cfg.backend == "ray" else 1,
        use_gpu,
    )
    if cfg.backend == "local":
        from laps_ray.training.loops import run_local

        try:
            run_local(spec, RunRecorder(output, keep=cfg.keep_checkpoints, resume_step=resume_step))
        except FloatingPointError as exc:
            raise rt.JobError(str(exc)) from exc
    else:
        fit_with_ray(cfg, spec, resume_step, use_gpu, extra_callbacks)
    seconds = time.time() - t0
    try:
        summary = write_summary(
            output,
            extra={
                "command": command,
                "backend": cfg.backend,
                "num_workers": cfg.num_workers if cfg.backend == "ray" else 1,
                "use_gpu": use_gpu,
                "wall_seconds": round(seconds, 1),
                "model": cfg.model.name,
            },
        )
    except ValueError as exc:
        raise rt.JobError(f"{output / METRICS_FILE}: {exc}") from exc
    if summary.get("collapse_warning"):
        log.warning("%s", summary["collapse_warning"])
    manifest.extra["summary"] = {k: summary[k] for k in ("epochs_completed", "steps", "best", "codebook")}
    manifest.write(finished=True)
    workers = cfg.num_workers if cfg.backend == "ray" else 1
    return TrainResult(output, summary, seconds, cfg.backend, workers, use_gpu)


def _prepare_output(output: Path, cfg: TrainTokenizerConfig) -> tuple[str | None, int | None]:
    """``(checkpoint to resume from, its step)`` for ``--resume``; refuse to mix a new run into an old one."""
    from laps_ray.io.checkpoints import CheckpointError, read_meta

    storage = Path(cfg.storage_path) if cfg.storage_path and "://" not in cfg.storage_path else output
    ckpts = storage / CHECKPOINTS_DIR
    earlier = (
        (output / METRICS_FILE).exists()
        or (output / LATEST_FILE).exists()
        or (ckpts.is_dir() and any(ckpts.iterdir()))
    )
    if not cfg.resume:
        if earlier:
            raise rt.JobError(
                f"{output} already holds a training run ({METRICS_FILE}, {CHECKPOINTS_DIR}/); "
                "pass --resume to "
                "continue it, or choose a new --output"
            )
        return None, None
    latest = latest_checkpoint(output)
    if latest is None:
        raise rt.JobError(
            f"{output}: nothing to resume (no '{LATEST_FILE}' checkpoint pointer); drop --resume"
        )
    if "://" in latest:
        return latest, None  # remote storage: Ray restores it (ray.train.get_checkpoint)
    try:
        step = int(read_meta(latest)["step"])
    except (CheckpointError, KeyError, TypeError, ValueError) as exc:
        raise rt.JobError(f"{latest}: cannot resume from this checkpoint ({exc})") from exc
    log.info("resuming from %s (step %d)", latest, step)
    return latest, step


def _use_gpu(cfg: TrainTokenizerConfig) -> bool:
    if cfg.use_gpu == "false":
        return False
    if cfg.backend == "local":
        import torch

        have = torch.cuda.is_available()
    else:
        have = cluster_gpus() > 0
    if cfg.use_gpu == "true" and not have:
        raise rt.JobError("use_gpu=true but no GPU is available (use_gpu=auto trains on CPU then)")
    return have


def fit_with_ray(
    cfg: TrainTokenizerConfig,
    spec: WorkerSpec,
    resume_step: int | None,
    use_gpu: bool,
    extra_callbacks: Sequence[Any] = (),
) -> Any:
    """Run the ``TorchTrainer`` (Train V2) on the connected Ray cluster; returns its ``Result``."""
    import ray
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from laps_ray.training.loops import ray_train_loop, recorder_callback

    resources: dict[str, float] = {"CPU": cfg.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = cfg.gpus_per_worker
    have_cpu = float(ray.cluster_resources().get("CPU", 0))
    need_cpu = cfg.num_workers * cfg.cpus_per_worker
    if need_cpu > have_cpu + 1e-9:
        # Ray would wait for resources forever on a fixed-size cluster.
        raise rt.JobError(
            f"num_workers={cfg.num_workers} x cpus_per_worker={cfg.cpus_per_worker} needs {need_cpu:g} "
            "CPUs but "
            f"the cluster has {have_cpu:g}; lower num_workers or cpus_per_worker"
        )
    storage = cfg.storage_path or cfg.output
    if "://" not in storage:
        storage = str(Path(storage).resolve())
    trainer = TorchTrainer(
        ray_train_loop,
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
        raise rt.JobError(f"training failed: {_root_cause(exc)}") from exc


def _root_cause(exc: BaseException) -> str:
    """The last informative line of a (worker) error: usually ``SomeError: message``."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln.split(":", 1)[0] or "Exception" in ln.split(":", 1)[0]:
            return ln
    return lines[-1] if lines else type(exc).__name__


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
    acc, epe = final.get(f"{cb.get('split')}/accuracy"), final.get(f"{cb.get('split')}/epe_px")
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
    lines.append(f"  {METRICS_FILE}, {SUMMARY_FILE}, {CURVES_FILE} in {r.output}")
    if s.get("collapse_warning"):
        lines.append(f"WARNING: {s['collapse_warning']}")
    return "\n".join(lines)


FLAGS = (
    Flag("--tracks", "tracks", "folder of .h5 track files (from the preprocess job)"),
    Flag("--output", "output", "output folder (checkpoints, metrics, summary)"),
    Flag("--resume", "resume", "continue from <output>/latest", switch=True),
    Flag("--local", "backend", "train in this process without Ray", switch=True, const="local"),
    Flag("--num-workers", "num_workers", "Ray Train workers (default 2)", type=int),
    Flag("--epochs", "epochs", "epochs (default from the config)", type=int),
)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", "laps_ray.jobs.train_tokenizer", *argv])
    run_job(
        "train_tokenizer",
        __doc__,
        FLAGS,
        TrainTokenizerConfig,
        lambda cfg: run(cfg, command=command),
        summary_line,
        argv,
        load=lambda path, overrides: load_job_config(path, overrides),
    )


if __name__ == "__main__":
    main()
