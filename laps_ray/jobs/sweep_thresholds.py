r"""sweep_thresholds: Ray Tune over the segmentation settings, on cached energies (no video is decoded).

Local (starts or joins a Ray instance on this machine)::

    python -m laps_ray.jobs.sweep_thresholds --energy out/ --gt gt/ [--fps 15] --output sweep/

On a cluster (same command after ``--``)::

    ray job submit --working-dir . -- \
        python -m laps_ray.jobs.sweep_thresholds --energy out/ --gt gt/ --output sweep/

Options: ``--config configs/sweep_thresholds.yaml``, ``key=value`` overrides (e.g.
``space.threshold=[0.5,1.0] space.up_count=[1,2,3] search=random num_samples=40``). Then::

    python -m laps_ray.jobs.segment_folder --config sweep/best.yaml --input videos/ --output out2/

**Inputs.** ``--energy`` is a segment_folder output folder: per video ``<stem>/energy.jsonl`` (every
window's raw energies and code ids), ``<stem>/segments.json`` (window geometry, recorded energy) and
``<stem>/timeline.npz`` (processed frame → source seconds). An output written before timeline.npz
existed is refused with a one-line error: re-run segment_folder on it. The driver reads the arrays
once (``laps_ray.pipeline.calibration_data``) and hands them to the trials with
``tune.with_parameters`` (one object-store copy); a trial only smooths, runs the state machine and
scores (``laps_ray.pipeline.threshold_sweep``). Video modules are never imported. Change-point scores
(``code_mmd`` on the cached code ids) are computed once per ``k`` by the driver.

**Scoring.** Ground truth (``--gt``: LAPS JSON or MS-TCN label files with ``--fps``, as in
``evaluate``) or, without it, pseudo-label segments (``pseudo.*``, the label rules of ``calibrate``).
A trial's segments go from processed frames to seconds by THE rule segment_folder writes them with
(the video's timeline) and are scored as ``evaluate`` scores them: a trial's score is ``evaluate``'s
score of the ``segments.json`` that ``segment_folder --config best.yaml`` would write. Score =
boundary F1 at ``tolerance_sec`` (optimal matching, shared boundaries once), mean over videos; P/R
and F1 at every ``tolerances_sec`` are reported too. Ties: ``threshold_sweep.rank_trials`` (when the
data cannot tell, the fewest settings changed from the base values win).

**Search space** (``space.*``): a list of candidates per swept name (``threshold_sweep.SWEPT`` maps
each to the config key it sets: ``smoothing_alpha`` → ``energy.smoothing.alpha``, ``up_count`` →
``segmentation.up_count``, ...); an empty list keeps the base value (``smoothing.*``,
``segmentation.*``). The threshold comes from ``space.threshold`` (absolute values) or, when that is
empty, ``space.threshold_quantiles`` (quantiles of the pooled non-gated segmentation signal, resolved
per trial because smoothing changes the signal; the absolute value is reported and written).
``search: grid`` = every combination; ``random`` = ``num_samples`` draws (``BasicVariantGenerator``,
seeded). No scheduler: each trial is a single evaluation (one report), so early stopping such as ASHA
has nothing to stop. Trials ask for ``resources.cpus_per_trial`` CPUs (0.5: four at a time on 2 cores).

**Outputs** (``--output DIR``): ``best.yaml`` (``energy:`` {source, mode, smoothing} and
``segmentation:`` — the field names of ``EnergyConfig`` and ``SegmentationConfig``, which
segment_folder's config nests under those keys), ``trials.csv`` and ``trials.json`` (every trial, best
first, with its settings and scores), ``result.json`` and ``config.yaml``; Tune's own files under
``DIR/tune/`` (its ``storage_path``; on a multi-node cluster trial folders stay on the nodes unless
DIR is shared storage — our tables come from the driver and are complete either way).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from laps_ray.config import ConfigError, check, check_choice, to_dict
from laps_ray.core.calibration import LABEL_METHODS
from laps_ray.core.energy import EnergyConfig
from laps_ray.core.metrics import fmt_num
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.core.smoothing import SmoothingConfig
from laps_ray.io.atomic import prepare_output_dir, write_json_atomic, write_text_atomic
from laps_ray.io.run_manifest import versions
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import Flag, run_job
from laps_ray.pipeline.calibration_data import read_cached_videos, with_ground_truth, with_pseudo_labels
from laps_ray.pipeline.threshold_sweep import (
    QUANTILE,
    SWEPT,
    SegmentSettings,
    SweepData,
    base_values,
    build_sweep_data,
    rank_trials,
    score_settings,
    swept_energy,
    swept_type,
    trial_best,
    trials_csv,
)

log = logging.getLogger("laps_ray.sweep_thresholds")

SEARCHES = ("grid", "random")
MAX_GRID = 5000


def _check_space(space: Any) -> None:
    check(
        all(0 <= q <= 1 for q in space.threshold_quantiles), "space.threshold_quantiles", "must be in [0, 1]"
    )
    check(all(math.isfinite(t) for t in space.threshold), "space.threshold", "must be finite")
    check(all(k >= 1 for k in space.changepoint_k), "space.changepoint_k", "must be >= 1")


# One field per swept name of SWEPT (a list of candidates of the type of the config field it sets; an
# empty list keeps the base value), plus the quantile candidates of the threshold.
SweepSpaceConfig = dataclasses.make_dataclass(
    "SweepSpaceConfig",
    [(name, list[swept_type(name)], field(default_factory=list)) for name in SWEPT]  # type: ignore[misc]
    + [("threshold_quantiles", list[float], field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9]))],
    namespace={
        "__post_init__": _check_space,
        "__doc__": "Candidates per swept setting (names: threshold_sweep.SWEPT); [] keeps the base value.",
    },
)
SweepSpaceConfig.__module__ = __name__  # pickling and OmegaConf find it here


@dataclass
class PseudoLabelConfig:
    """Pseudo-label segments when there is no ground truth (``pipeline.calibration_data``).

    Attributes:
        proxy: series the labels come from (an ``energies`` key).
        method: label rule (``gmm_log`` | ``otsu``).
        min_windows: shortest run of active windows that makes a segment.
        include_gated: gated windows take part in the label threshold (as in ``calibrate``).
    """

    proxy: str = "velocity"
    method: str = "gmm_log"
    min_windows: int = 2
    include_gated: bool = True

    def __post_init__(self) -> None:
        check_choice(self.method, LABEL_METHODS, "pseudo.method")
        check(self.min_windows >= 1, "pseudo.min_windows", f"must be >= 1, got {self.min_windows}")


@dataclass
class SweepResourcesConfig:
    """Trial resources: small, since a trial is a few milliseconds to seconds of numpy."""

    cpus_per_trial: float = 0.5
    max_concurrent_trials: int = 4

    def __post_init__(self) -> None:
        check(self.cpus_per_trial > 0, "resources.cpus_per_trial", "must be > 0 (Tune rejects 0)")
        check(self.max_concurrent_trials >= 1, "resources.max_concurrent_trials", "must be >= 1")


@dataclass
class SweepJobConfig:
    """Settings of the sweep_thresholds job (``configs/sweep_thresholds.yaml``)."""

    input: str = ""
    gt: str = ""
    fps: float = 0.0
    output: str = ""
    source: str = "energy"
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    space: SweepSpaceConfig = field(default_factory=SweepSpaceConfig)  # type: ignore[valid-type]
    search: str = "grid"
    num_samples: int = 20
    seed: int = 0
    tolerance_sec: float = 2.0
    tolerances_sec: list[float] = field(default_factory=lambda: [1.0, 2.0, 5.0])
    pseudo: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    resources: SweepResourcesConfig = field(default_factory=SweepResourcesConfig)

    def __post_init__(self) -> None:
        check_choice(self.search, SEARCHES, "search")
        check(self.num_samples >= 1, "num_samples", f"must be >= 1, got {self.num_samples}")
        check(self.tolerance_sec >= 0, "tolerance_sec", f"must be >= 0, got {self.tolerance_sec}")
        check(all(t >= 0 for t in self.tolerances_sec), "tolerances_sec", "must be >= 0")
        check(math.isfinite(self.fps) and self.fps >= 0, "fps", f"must be >= 0, got {self.fps}")
        check(self.source != "energy_smooth", "source", "'energy_smooth' is already smoothed; use 'energy'")


@dataclass
class SweepResult:
    output: Path
    best: dict[str, Any]
    trials: list[dict[str, Any]]
    seconds: float
    num_videos: int
    labels: str
    tolerance_sec: float
    exit_code: int = 0


def load_sweep_data(cfg: SweepJobConfig) -> tuple[SweepData, dict[str, Any], dict[str, str]]:
    """Read the cached energies, timelines and GT (or pseudo-labels) into the trials' :class:`SweepData`.

    Returns:
        ``(data, labels info, {"source", "mode"} of the swept energy)``.

    Raises:
        rt.JobError: unusable outputs (e.g. no timeline.npz: re-run segment_folder), labels or energies.
    """
    try:
        cached = read_cached_videos(cfg.input, timelines=True)
        if cfg.gt:
            cal = with_ground_truth(cached, cfg.gt, cfg.fps)
        else:
            p = cfg.pseudo
            cal = with_pseudo_labels(cached, p.proxy, p.method, p.include_gated, p.min_windows, seconds=True)
            if cfg.source == p.proxy:
                log.warning(
                    "pseudo-labels come from %r, the swept energy itself: the scores are circular", p.proxy
                )
        for v in cal.videos:
            v.track.series(cfg.source)  # a missing series is an error naming the file and what it has
        src, mode = swept_energy(cfg.source, [v.video.meta.energy for v in cal.videos])
        cp = cfg.segmentation.changepoint
        ks = (cfg.space.changepoint_k or [cp.k]) if any(cfg.space.changepoint_enable or [cp.enable]) else []
        base = SegmentSettings(EnergyConfig(src, mode, cfg.smoothing), cfg.segmentation)
        data = build_sweep_data(cal, cfg.source, base, cfg.tolerance_sec, cfg.tolerances_sec, cfg.fps, ks)
    except ConfigError:
        raise
    except (ValueError, FileNotFoundError) as exc:  # unusable outputs, labels or energies: one line
        raise rt.JobError(str(exc)) from exc
    labels = {**cal.info, "left_out": cal.left_out} if cfg.gt else cal.info
    return data, labels, {"source": src, "mode": mode}


def param_lists(cfg: SweepJobConfig) -> dict[str, list]:
    """``{name: candidates}`` of every swept setting (threshold as absolute values or quantiles)."""
    sp = cfg.space
    out: dict[str, list] = {}
    if sp.threshold:
        out["threshold"] = list(sp.threshold)
    elif sp.threshold_quantiles:
        out[QUANTILE] = list(sp.threshold_quantiles)
    elif cfg.segmentation.threshold is None:
        raise ConfigError(
            "config key 'space.threshold': no threshold to use; give space.threshold, "
            "space.threshold_quantiles or segmentation.threshold"
        )
    for name in SWEPT:
        values = list(getattr(sp, name))
        if name != "threshold" and values:
            check(len(set(values)) == len(values), f"space.{name}", f"has duplicates: {values}")
            out[name] = values
    return out


def build_param_space(cfg: SweepJobConfig, lists: dict[str, list]) -> tuple[dict[str, Any], int]:
    """Tune ``param_space`` and ``num_samples`` for grid or random search."""
    from ray import tune

    if cfg.search == "grid":
        size = math.prod(len(v) for v in lists.values())
        check(size <= MAX_GRID, "search", f"grid has {size} combinations (> {MAX_GRID}); use search=random")
        return {k: tune.grid_search(v) for k, v in lists.items()}, 1
    return {k: tune.choice(v) for k, v in lists.items()}, cfg.num_samples


def _trial(config: dict[str, Any], data: SweepData | None = None) -> None:
    """Tune function trainable: one evaluation, one report."""
    from ray import tune

    metrics = score_settings(data, config)
    # Evidence for the "no video is touched" contract: the video module is never loaded here.
    metrics["video_module_loaded"] = "laps_ray.io.video" in sys.modules
    tune.report(metrics)


def run(cfg: SweepJobConfig) -> SweepResult:
    """Load the cached energies (no video is decoded), then start (or join) Ray and sweep."""
    check(bool(cfg.input), "input", "is required (--energy DIR)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    t0 = time.time()
    out_dir = Path(cfg.output).resolve()
    lists = param_lists(cfg)
    data, labels, energy_info = load_sweep_data(cfg)
    n_windows = sum(v.energy.size for v in data.videos)
    log.info(
        "%d videos, %d windows, labels: %s; swept: %s", len(data.videos), n_windows, labels["kind"], lists
    )

    prepare_output_dir(out_dir)
    rt.init_ray()  # after every input was checked

    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    space, num_samples = build_param_space(cfg, lists)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    concurrent = max(
        1, min(cfg.resources.max_concurrent_trials, int(cpus // cfg.resources.cpus_per_trial) or 1)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    # Metric names like "f1@2.0s" make tensorboardX log one INFO line per name and trial.
    logging.getLogger("tensorboardX").setLevel(logging.WARNING)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, data=data), {"cpu": cfg.resources.cpus_per_trial}
    )
    name = time.strftime("sweep_%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            num_samples=num_samples,
            # The concurrency cap goes to the generator: Tune ignores max_concurrent_trials with one.
            search_alg=BasicVariantGenerator(max_concurrent=concurrent, random_state=cfg.seed),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(out_dir / "tune"), verbose=0),
    )
    with rt.reclaim_placement_groups(), rt.tune_output_as_configured():
        grid = tuner.fit()

    tols = [fmt_num(t) for t in data.tolerances]
    keep = ["score", "f1", "precision", "recall", "threshold", "num_segments", "error", "video_module_loaded"]
    keep += [f"{n}@{t}s" for t in tols for n in ("precision", "recall", "f1")]
    trials: list[dict[str, Any]] = []
    for i, res in enumerate(grid):
        params = {k: res.config[k] for k in lists if k in (res.config or {})}
        row: dict[str, Any] = {"trial": i, "trial_id": (res.metrics or {}).get("trial_id", ""), **params}
        if res.error is not None:
            row.update(score=-1.0, error=f"{type(res.error).__name__}: {res.error}".splitlines()[0])
        else:
            m = res.metrics or {}
            row.update({k: m[k] for k in keep if k in m})
        trials.append(row)
    rank_trials(trials, data.tolerances, base_values(data.base))
    valid = [r for r in trials if r.get("score", -1.0) >= 0]
    if not valid:
        reasons = sorted({r.get("error", "") for r in trials})
        raise rt.JobError(f"all {len(trials)} trials failed or were invalid: {'; '.join(reasons)[:500]}")
    best = valid[0]
    doc = to_dict(trial_best(data.base, {k: best[k] for k in lists if k in best}, best["threshold"]))
    header = (
        f"# sweep_thresholds best settings: boundary F1@{fmt_num(cfg.tolerance_sec)}s = {best['f1']:.4f} "
        f"(P {best['precision']:.3f}, R {best['recall']:.3f}) over {len(data.videos)} videos, labels: "
        f"{labels['kind']}\n# use: python -m laps_ray.jobs.segment_folder --config best.yaml ...\n"
    )
    write_text_atomic(out_dir / "best.yaml", header + yaml.safe_dump(doc, sort_keys=False))
    write_json_atomic(out_dir / "trials.json", trials)
    write_text_atomic(out_dir / "trials.csv", trials_csv(trials))
    seconds = time.time() - t0
    result = {
        "job": "sweep_thresholds",
        "best": {**best, "settings": doc},
        "num_trials": len(trials),
        "num_invalid": len(trials) - len(valid),
        "search": cfg.search,
        "swept": lists,
        "videos": [v.stem for v in data.videos],
        "num_windows": n_windows,
        "labels": labels,
        "energy": energy_info,
        "tolerance_sec": cfg.tolerance_sec,
        "tune_dir": str(out_dir / "tune" / name),
        "seconds": round(seconds, 3),
        "versions": versions(),
        "config": to_dict(cfg),
    }
    write_json_atomic(out_dir / "result.json", result)
    return SweepResult(out_dir, best, trials, seconds, len(data.videos), labels["kind"], cfg.tolerance_sec)


def summary_text(r: SweepResult) -> str:
    """The printed summary."""
    b = r.best
    params = ", ".join(f"{k}={v}" for k, v in b.items() if (k in SWEPT or k == QUANTILE) and k != "threshold")
    lines = [
        f"sweep_thresholds: {len(r.trials)} trials on {r.num_videos} videos ({r.labels} labels) in "
        f"{r.seconds:.1f}s -> {r.output}",
        f"  best: F1@{fmt_num(r.tolerance_sec)}s {b['f1']:.4f} (P {b['precision']:.3f}, "
        f"R {b['recall']:.3f}), threshold {b['threshold']:.4g}; {params}",
        "  wrote best.yaml (segment_folder --config), trials.csv, trials.json, result.json",
    ]
    return "\n".join(lines)


FLAGS = (
    Flag("--energy", "input", "segment_folder output folder (*/energy.jsonl, segments.json, timeline.npz)"),
    Flag("--gt", "gt", "ground-truth folder (LAPS JSON or MS-TCN label files); else pseudo-labels"),
    Flag("--fps", "fps", "frame rate of MS-TCN label files", type=float),
    Flag("--output", "output", "output folder"),
    Flag("--num-samples", "num_samples", "random search: trials", type=int),
)


def main(argv: list[str] | None = None) -> None:
    run_job("sweep_thresholds", __doc__, FLAGS, SweepJobConfig, run, summary_text, argv)


if __name__ == "__main__":
    main()
