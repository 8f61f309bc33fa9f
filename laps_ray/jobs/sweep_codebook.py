r"""sweep_codebook: Ray Tune over the tokenizer's codebook size (and optionally the learning rate).

Local (starts or joins a Ray instance on this machine; ``--address local`` forces a private one)::

    python -m laps_ray.jobs.sweep_codebook --tracks tracks/ --output runs/sweep [model=small] \
        [codebook_sizes=[64,256,1024,2048]] [lrs=[1e-3,3e-3]] [train.epochs=5]

On a cluster (``--tracks`` and ``--output`` on storage every node sees)::

    ray job submit --working-dir . -- \
        python -m laps_ray.jobs.sweep_codebook --tracks /shared/tracks --output /shared/sweep

**Trials.** One trial per (codebook size, learning rate). Each trial is a short train_tokenizer run
(``train.*``: the train_tokenizer config, e.g. ``train.epochs``, ``train.batch_size``, ``train.loss.*``)
launched the Train V2 + Tune way: a Tune function trainable (``tune.with_resources(...,
{"cpu": cpus_per_trial})``) builds a ``TorchTrainer`` whose ``ray.tune.integration.ray_train
.TuneReportCallback`` forwards rank 0's epoch reports to Tune. Trials train ``train.num_workers`` (1)
workers of ``train.cpus_per_worker`` (0.5) CPUs, so a trial needs ``cpus_per_trial + workers × cpus``
= 1 CPU and two run at once on 2 cores (``max_concurrent_trials``, 0 = as many as fit).
``ASHAScheduler`` stops poor trials early on ``val/loss`` with ``epoch`` as the time attribute
(``grace_period``, ``reduction_factor``; ``max_t`` = ``train.epochs``); step reports are off in sweeps.

**Outputs** (``--output DIR``): ``sweep.csv`` and ``sweep.json`` (one row per trial: nominal
``codebook_size``, ``true_codebook_size``, ``levels``, ``lr``, ``best_val_loss``, ``best_epoch``,
``epochs_run``, ``stopped_early``, ``final_unique_codes``, ``utilisation`` = unique / true codes,
``perplexity``, ``collapsed``, ``status``), ``sweep.png`` (validation loss vs codebook utilisation per
size), ``config.yaml``, ``run.json``; each trial's own training folder under ``trials/`` (metrics,
checkpoints, ``best/``) and Tune's files under ``tune/``. The best trial is the lowest best
validation loss among those that did not collapse (utilisation < ``train.collapse_threshold``);
it is named in the last line printed and in ``sweep.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from laps_ray.config import check, load_config
from laps_ray.io.atomic import prepare_output_dir
from laps_ray.io.run_manifest import RunManifest
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import OUTPUT, Flag, run_job
from laps_ray.models.fsq_levels import valid_codebook_sizes
from laps_ray.models.tokenizer_config import model_for_name
from laps_ray.training.config import TrainTokenizerConfig, resolve_model_name
from laps_ray.training.sweep_report import METRIC, pick_best, plot_sweep, trial_row, write_tables

log = logging.getLogger("laps_ray.sweep_codebook")

TIME_ATTR = "epoch"


def _default_train() -> TrainTokenizerConfig:
    # Short runs, one half-CPU worker each, epoch reports only (Tune needs val/loss in every report).
    return TrainTokenizerConfig(epochs=5, num_workers=1, cpus_per_worker=0.5, log_every_steps=0)


@dataclasses.dataclass
class SweepCodebookConfig:
    """Settings of the sweep_codebook job (``configs/sweep_codebook.yaml``); see the module docstring."""

    tracks: str = ""
    output: str = ""
    train: TrainTokenizerConfig = dataclasses.field(default_factory=_default_train)
    codebook_sizes: list[int] = dataclasses.field(default_factory=lambda: [64, 256, 1024, 2048])
    lrs: list[float] = dataclasses.field(default_factory=list)
    grace_period: int = 1
    reduction_factor: int = 2
    cpus_per_trial: float = 0.5
    max_concurrent_trials: int = 0

    def __post_init__(self) -> None:
        check(len(self.codebook_sizes) > 0, "codebook_sizes", "needs at least one size")
        bad = [k for k in self.codebook_sizes if k not in valid_codebook_sizes()]
        check(
            not bad, "codebook_sizes", f"{bad} have no FSQ levels; valid sizes are {valid_codebook_sizes()}"
        )
        check(all(lr > 0 for lr in self.lrs), "lrs", f"must all be > 0, got {self.lrs}")
        check(self.grace_period >= 1, "grace_period", f"must be >= 1, got {self.grace_period}")
        check(self.reduction_factor >= 2, "reduction_factor", f"must be >= 2, got {self.reduction_factor}")
        check(
            self.cpus_per_trial > 0,
            "cpus_per_trial",
            f"must be > 0 (Tune rejects 0), got {self.cpus_per_trial}",
        )
        check(self.max_concurrent_trials >= 0, "max_concurrent_trials", "must be >= 0 (0 = as many as fit)")
        check(self.train.val_fraction > 0, "train.val_fraction", "must be > 0: trials are ranked by val/loss")
        check(
            self.train.backend == "ray",
            "train.backend",
            "must be 'ray' in a sweep (each trial is a Train run)",
        )


@dataclasses.dataclass
class SweepResult:
    """What :func:`run` did: one table row per trial (see the module docstring), the best, wall seconds."""

    output: Path
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    seconds: float
    exit_code: int = 0


def load_sweep_config(config_path: str | Path | None, overrides: Sequence[str]) -> SweepCodebookConfig:
    """Defaults → ``model=NAME`` (shorthand for ``train.model``) → YAML → overrides (flags included).

    Raises:
        laps_ray.config.ConfigError: unreadable file, unknown key or model name, invalid value.
    """
    overrides = [f"train.{o}" if o.split("=", 1)[0].strip() == "model" else o for o in overrides]
    name, rest = resolve_model_name(config_path, overrides, key="train.model")
    default = _default_train()
    base = SweepCodebookConfig(train=dataclasses.replace(default, model=model_for_name(name, default.model)))
    return load_config(SweepCodebookConfig, config_path, rest, base=base)


def trial_name(codebook_size: int, lr: float) -> str:
    """Folder name of a trial under ``<output>/trials/``."""
    return f"cb{codebook_size:04d}_lr{lr:.0e}"


def _trial(config: dict[str, Any], base: TrainTokenizerConfig, trials_root: str) -> None:
    """Tune function trainable: one short TorchTrainer run; Tune sees its epoch reports."""
    import ray
    from ray.tune.integration.ray_train import TuneReportCallback

    from laps_ray.training.run import train

    k, lr = int(config["codebook_size"]), float(config["lr"])
    cfg = dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, codebook_size=k),
        optim=dataclasses.replace(base.optim, lr=lr),
        output=str(Path(trials_root) / trial_name(k, lr)),
        resume=False,
    )
    logging.getLogger("laps_ray").setLevel(logging.INFO)
    train(
        cfg,
        connect=ray.cluster_resources,  # a trial runs inside the sweep's Ray: nothing to start
        command=f"sweep_codebook trial {trial_name(k, lr)}",
        extra_callbacks=[TuneReportCallback()],
    )


def run(cfg: SweepCodebookConfig, command: str | None = None) -> SweepResult:
    """Check the inputs, then start (or join) Ray and run the sweep (see :func:`main`)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from laps_ray.training.data import split_files

    check(bool(cfg.tracks), "tracks", "is required (--tracks DIR of .h5 files from the preprocess job)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    t0 = time.time()
    tracks, out = Path(cfg.tracks).resolve(), Path(cfg.output).resolve()
    _, val_files = split_files(tracks, cfg.train.val_fraction, cfg.train.seed)
    if not val_files:
        raise rt.JobError(f"{tracks}: a sweep needs at least two videos (trials are ranked by val/loss)")
    trials_root = out / "trials"
    if trials_root.exists() and any(trials_root.iterdir()):
        raise rt.JobError(f"{out} already holds a sweep (trials/); choose a new --output")
    prepare_output_dir(out)
    rt.init_ray()  # after every input was checked
    manifest = RunManifest.create(out, "sweep_codebook", cfg, command=command)
    base = dataclasses.replace(cfg.train, tracks=str(tracks), log_every_steps=0, backend="ray")
    lrs = list(cfg.lrs) or [base.optim.lr]

    per_trial = cfg.cpus_per_trial + base.num_workers * base.cpus_per_worker
    cpus = float(ray.cluster_resources().get("CPU", 1))
    fit = max(1, int(cpus // per_trial + 1e-9))
    if per_trial > cpus + 1e-9:
        raise rt.JobError(
            f"a trial needs {per_trial:g} CPUs (cpus_per_trial + train.num_workers x train.cpus_per_worker) "
            f"but "
            f"the cluster has {cpus:g}"
        )
    concurrent = min(cfg.max_concurrent_trials or fit, fit)
    space = {"codebook_size": tune.grid_search(list(cfg.codebook_sizes)), "lr": tune.grid_search(lrs)}
    scheduler = ASHAScheduler(
        time_attr=TIME_ATTR,
        max_t=base.epochs,
        grace_period=min(cfg.grace_period, base.epochs),
        reduction_factor=cfg.reduction_factor,
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base, trials_root=str(trials_root)), {"cpu": cfg.cpus_per_trial}
    )
    n_trials = len(cfg.codebook_sizes) * len(lrs)
    log.info(
        "%d trials (%s x lr %s), %d at a time, %d epochs each, ASHA on %s",
        n_trials,
        cfg.codebook_sizes,
        lrs,
        concurrent,
        base.epochs,
        METRIC,
    )
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="min", scheduler=scheduler, max_concurrent_trials=concurrent
        ),
        run_config=tune.RunConfig(name="tune", storage_path=str(out), verbose=0),
    )
    with rt.reclaim_placement_groups(), rt.tune_output_as_configured():
        grid = tuner.fit()
    errors: dict[tuple[int, float], str] = {}
    for result in grid:
        if result.error is not None and result.config:
            key = (int(result.config["codebook_size"]), float(result.config["lr"]))
            errors[key] = _one_line(result.error)
    rows = [
        trial_row(
            trials_root / trial_name(k, lr), k, lr, base.epochs, base.collapse_threshold, errors.get((k, lr))
        )
        for k in cfg.codebook_sizes
        for lr in lrs
    ]
    best = pick_best(rows)
    write_tables(out, rows, best)
    plot_sweep(rows, best, out / "sweep.png")
    manifest.extra.update(best=best, trials=len(rows))
    manifest.write(finished=True)
    done = [r for r in rows if r["status"] != "failed"]
    code = 1 if not done else 0
    return SweepResult(out, rows, best, time.time() - t0, code)


def _one_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def summary(r: SweepResult) -> str:
    """The lines printed at the end: one per trial, then the best size."""
    lines = [
        f"sweep_codebook: {len(r.rows)} trials in {r.seconds:.1f}s -> {r.output} "
        "(sweep.csv, sweep.json, sweep.png)"
    ]
    for row in r.rows:
        loss = f"{row['best_val_loss']:.4f}" if row["best_val_loss"] is not None else "-"
        util = f"{100 * row['utilisation']:.1f}%" if row["utilisation"] is not None else "-"
        lines.append(
            f"  codebook {row['codebook_size']:>4} ({row['true_codebook_size']} codes) lr {row['lr']:.0e}: "
            f"best val/loss {loss}, {row['final_unique_codes']} codes used ({util}), {row['status']}"
            + (f": {row['error']}" if row.get("error") else "")
        )
    b = r.best
    if b is None:
        lines.append("best: none (every trial failed)")
    else:
        flag = " (WARNING: every trial collapsed)" if b["all_collapsed"] else ""
        lines.append(
            f"best: codebook_size={b['codebook_size']} lr={b['lr']:g} (val/loss {b['best_val_loss']:.4f}, "
            f"utilisation {100 * (b['utilisation'] or 0):.1f}%){flag}"
        )
    return "\n".join(lines)


FLAGS = (
    Flag("--tracks", "tracks", "folder of .h5 track files (from the preprocess job)"),
    OUTPUT,
)


def main(argv: list[str] | None = None) -> None:
    run_job(
        "sweep_codebook",
        __doc__,
        FLAGS,
        SweepCodebookConfig,
        run,
        summary,
        argv,
        load=load_sweep_config,
        record_command=True,
    )


if __name__ == "__main__":
    main()
