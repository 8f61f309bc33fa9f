r"""sweep_thresholds: Ray Tune over the segmentation settings, on cached energies (no video is decoded).

Local (starts or joins a Ray instance on this machine)::

    python -m laps_ray.jobs.sweep_thresholds --energy out/ --gt gt/ [--fps 15] --output sweep/

On a cluster (same command after ``--``)::

    ray job submit --working-dir . -- \
        python -m laps_ray.jobs.sweep_thresholds --energy out/ --gt gt/ --output sweep/

Options: ``--config configs/sweep_thresholds.yaml``, ``key=value`` overrides (e.g.
``space.up_count=[1,2,3] space.threshold_factors=[0.8,1.25] search=random num_samples=40``). Then::

    python -m laps_ray.jobs.segment_folder --config sweep/best.yaml --input videos/ --output out2/

**Inputs.** ``--energy``: a segment_folder output (per video ``energy.jsonl``, ``segments.json``,
``timeline.npz``; an output without timeline.npz is refused: re-run segment_folder), read once by the
driver (``pipeline.calibration_data``) and handed to the trials with ``tune.with_parameters``.

**Base** (``base: recorded``, default): the settings segment_folder ran with, as ``segments.json``
records them (smoothing, state machine, the threshold actually used: fixed, report or ``auto``); this
config's ``smoothing``/``segmentation`` fill the rest (``base: config``: use them instead). Trial 0
is exactly the base, scored like every other trial.

**Space** (``pipeline.sweep_space``): thresholds around the base's (``threshold_factors``, x0.25 ...
x4), ``threshold_rules`` (``core.label_rules`` on the pooled signal, ``best_f1``/``best_j`` against the
reference labels), ``space.threshold``, ``threshold_quantiles``; one list per other swept name
(``threshold_sweep.SWEPT``; the base value always in, ``[]`` keeps it). Each distinct setting runs
once. ``search: grid`` (default) runs them all (a trial is milliseconds of numpy); ``random`` draws
``num_samples`` without replacement, the base always in. Tune's ``BasicVariantGenerator``, no scheduler.

**Score**: a trial's segments go to seconds by THE rule segment_folder writes them with and are scored
as ``evaluate`` scores them against the GT (``--gt``, ``--fps``) or pseudo-label segments
(``pseudo.*``): boundary F1 at ``tolerance_sec`` (mean over videos), P/R/F1 at every
``tolerances_sec``. **Never worse**: only a trial whose F1 is at least the base's at every tolerance
can be best (``threshold_sweep.rank_trials``); ties keep the base. The summary prints both.

**Outputs** (``--output DIR``): ``best.yaml`` (``energy:``/``segmentation:``, for segment_folder),
``trials.csv``/``trials.json`` (best first: settings, ``threshold_from``, scores, ``no_worse``),
``result.json`` (``base`` and ``best``, counts of distinct and duplicate settings), ``config.yaml``;
Tune's own files under ``DIR/tune/``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from laps_ray.config import ConfigError, check, check_choice, to_dict
from laps_ray.core.auto_threshold import AutoThresholdConfig
from laps_ray.core.energy import EnergyConfig
from laps_ray.core.label_rules import LABEL_METHODS
from laps_ray.core.metrics import fmt_num
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.core.smoothing import SmoothingConfig
from laps_ray.io.atomic import prepare_output_dir, write_json_atomic, write_text_atomic
from laps_ray.io.run_manifest import versions
from laps_ray.jobs import _runtime as rt
from laps_ray.jobs._cli import Flag, run_job
from laps_ray.pipeline.calibration_data import read_cached_videos, with_ground_truth, with_pseudo_labels
from laps_ray.pipeline.sweep_space import (
    THRESHOLD_RULES,
    SweepSpaceConfig,
    complete_base,
    distinct_candidates,
    draw,
    recorded_base,
    space_lists,
    threshold_candidates,
    trial_table,
    trials_csv,
)
from laps_ray.pipeline.threshold_sweep import (
    SWEPT,
    SegmentSettings,
    SweepData,
    TrialError,
    build_sweep_data,
    score_settings,
    swept_energy,
)

log = logging.getLogger("laps_ray.sweep_thresholds")

SEARCHES = ("grid", "random")
BASES = ("recorded", "config")
MAX_GRID = 5000


@dataclass
class PseudoLabelConfig:
    """Pseudo-label segments when there is no ground truth (``pipeline.calibration_data``).

    Attributes:
        proxy: series the labels come from (an ``energies`` key).
        method: label rule (``core.label_rules.LABEL_METHODS``).
        min_windows: shortest run of active windows that makes a segment.
        include_gated: gated windows take part in the label threshold (as in ``calibrate``).
    """

    proxy: str = AutoThresholdConfig.proxy
    method: str = AutoThresholdConfig.label_method
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
    base: str = "recorded"
    smoothing: SmoothingConfig = field(default_factory=lambda: EnergyConfig().smoothing)
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
        check_choice(self.base, BASES, "base")
        check(self.num_samples >= 1, "num_samples", f"must be >= 1, got {self.num_samples}")
        check(self.tolerance_sec >= 0, "tolerance_sec", f"must be >= 0, got {self.tolerance_sec}")
        check(all(t >= 0 for t in self.tolerances_sec), "tolerances_sec", "must be >= 0")
        check(math.isfinite(self.fps) and self.fps >= 0, "fps", f"must be >= 0, got {self.fps}")
        check(self.source != "energy_smooth", "source", "'energy_smooth' is already smoothed; use 'energy'")


@dataclass
class SweepResult:
    output: Path
    best: dict[str, Any]
    base: dict[str, Any]
    trials: list[dict[str, Any]]
    seconds: float
    num_videos: int
    labels: str
    tolerance_sec: float
    counts: dict[str, int]
    tolerances: list[float]
    search: str = "grid"
    exit_code: int = 0


def load_sweep_data(cfg: SweepJobConfig) -> tuple[SweepData, dict[str, Any], dict[str, str]]:
    """Read the cached energies, timelines and GT (or pseudo-labels) into the trials' :class:`SweepData`,
    with the base settings (recorded, or the config's) and a base threshold.

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
        recorded = [v.video.meta.energy for v in cal.videos]
        src, mode = swept_energy(cfg.source, recorded)
        fallback = SegmentSettings(EnergyConfig(src, mode, cfg.smoothing), cfg.segmentation)
        base, per_video, info = fallback, {}, {"recorded": False}
        if cfg.base == "recorded":
            same = cfg.source == "energy" or all(
                r.get("source") == src and (src == "velocity" or r.get("mode") == mode) for r in recorded
            )
            metas = {v.stem: v.video.meta for v in cal.videos}
            base, per_video, info = recorded_base(metas, fallback, same)
        cp, sp = base.segmentation.changepoint, cfg.space
        # The base's values are candidates too: its k is cached whenever change points may be on.
        ks = sorted({*sp.changepoint_k, cp.k}) if cp.enable or any(sp.changepoint_enable) else []
        data = build_sweep_data(
            cal, cfg.source, base, cfg.tolerance_sec, cfg.tolerances_sec, cfg.fps, ks, per_video
        )
        data.base_info = {"from": cfg.base, **info}
        complete_base(data, sp.threshold_rules or THRESHOLD_RULES)
    except ConfigError:
        raise
    except (ValueError, FileNotFoundError) as exc:  # unusable outputs, labels or energies: one line
        raise rt.JobError(str(exc)) from exc
    labels = {**cal.info, "left_out": cal.left_out} if cfg.gt else cal.info
    return data, labels, {"source": src, "mode": mode}


def param_lists(cfg: SweepJobConfig) -> dict[str, list]:
    """``{name: candidates}`` of every swept setting but the threshold (non-empty lists only)."""
    return space_lists(cfg.space)


def _trial(config: dict[str, Any], data: SweepData | None = None, settings: list | None = None) -> None:
    """Tune function trainable: one distinct setting, one evaluation, one report."""
    from ray import tune

    metrics = score_settings(data, settings[config["candidate"]])  # type: ignore[arg-type, index]
    # Evidence for the "no video is touched" contract: the video module is never loaded here.
    metrics["video_module_loaded"] = "laps_ray.io.video" in sys.modules
    tune.report(metrics)


def _run_tune(cfg: SweepJobConfig, data: SweepData, settings: list, chosen: list[int], out_dir: Path) -> Any:
    """Run the chosen candidates as one Tune grid (BasicVariantGenerator); returns (ResultGrid, name)."""
    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    cpus = float(ray.cluster_resources().get("CPU", 1))
    concurrent = max(
        1, min(cfg.resources.max_concurrent_trials, int(cpus // cfg.resources.cpus_per_trial) or 1)
    )
    # Metric names like "f1@2.0s" make tensorboardX log one INFO line per name and trial.
    logging.getLogger("tensorboardX").setLevel(logging.WARNING)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, data=data, settings=settings), {"cpu": cfg.resources.cpus_per_trial}
    )
    name = time.strftime("sweep_%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        trainable,
        param_space={"candidate": tune.grid_search(chosen)},
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            num_samples=1,
            # The concurrency cap goes to the generator: Tune ignores max_concurrent_trials with one.
            search_alg=BasicVariantGenerator(max_concurrent=concurrent, random_state=cfg.seed),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(out_dir / "tune"), verbose=0),
    )
    with rt.reclaim_placement_groups(), rt.tune_output_as_configured():
        return tuner.fit(), name


def run(cfg: SweepJobConfig) -> SweepResult:
    """Load the cached energies (no video is decoded), build the distinct settings, then start (or
    join) Ray and run them; best.yaml is never worse than the base on these data."""
    check(bool(cfg.input), "input", "is required (--energy DIR)")
    check(bool(cfg.output), "output", "is required (--output DIR)")
    t0 = time.time()
    out_dir = Path(cfg.output).resolve()
    lists = param_lists(cfg)
    data, labels, energy_info = load_sweep_data(cfg)
    sp = cfg.space
    thresholds = threshold_candidates(data, sp.threshold_factors, sp.threshold, sp.threshold_rules)
    try:
        cands, counts = distinct_candidates(data, lists, thresholds, sp.threshold_quantiles)
    except TrialError as exc:
        raise rt.JobError(str(exc)) from exc
    if cfg.search == "grid":
        check(len(cands) <= MAX_GRID, "search", f"{len(cands)} distinct settings (> {MAX_GRID}); use random")
        chosen = list(range(len(cands)))
    else:
        chosen = draw(cands, cfg.num_samples, cfg.seed)
    counts.update(distinct=len(cands), run=len(chosen))
    n_windows = sum(v.energy.size for v in data.videos)
    log.info(
        "%d videos, %d windows, labels: %s; %d distinct settings of %d combinations (%d duplicates, %d "
        "invalid), running %d (%s)", len(data.videos), n_windows, labels["kind"], len(cands),
        counts["combinations"], counts["duplicates"], counts["invalid"], len(chosen), cfg.search,
    )  # fmt: skip

    prepare_output_dir(out_dir)
    rt.init_ray()  # after every input was checked
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    grid, name = _run_tune(cfg, data, [c.settings for c in cands], chosen, out_dir)

    outcomes = {}
    for res in grid:
        err = res.error and f"{type(res.error).__name__}: {res.error}".splitlines()[0]
        outcomes[int(res.config["candidate"])] = {"score": -1.0, "error": err} if err else res.metrics or {}
    try:
        trials = trial_table(data, cands, outcomes)
    except TrialError as exc:
        raise rt.JobError(str(exc)) from exc
    best, base = trials[0], next(r for r in trials if r["trial"] == 0)
    doc = to_dict(cands[best["trial"]].settings)
    main = fmt_num(cfg.tolerance_sec)
    header = (
        f"# sweep_thresholds: best of {len(chosen)} distinct settings on {len(data.videos)} videos "
        f"({labels['kind']} labels); boundary F1@{main}s base {base['f1']:.4f} -> best {best['f1']:.4f}"
        f"{' (the base: nothing beat it)' if best['trial'] == 0 else ''}\n"
        "# use: python -m laps_ray.jobs.segment_folder --config best.yaml ...\n"
    )
    write_text_atomic(out_dir / "best.yaml", header + yaml.safe_dump(doc, sort_keys=False))
    write_json_atomic(out_dir / "trials.json", trials)
    write_text_atomic(out_dir / "trials.csv", trials_csv(trials))
    seconds = time.time() - t0
    result = {
        "job": "sweep_thresholds",
        "base": {**base, "settings": to_dict(data.base), "recorded": data.base_info},
        "best": {**best, "settings": doc},
        "best_is_base": best["trial"] == 0,
        "num_trials": len(trials),
        "num_distinct": len(cands),
        "counts": counts,
        "num_invalid": sum(1 for r in trials if r.get("score", -1.0) < 0),
        "search": cfg.search,
        "swept": lists,
        "thresholds": [{"value": t, "from": why} for t, why in thresholds],
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
    return SweepResult(
        out_dir, best, base, trials, seconds, len(data.videos), labels["kind"], cfg.tolerance_sec, counts,
        data.tolerances, cfg.search,
    )  # fmt: skip


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def summary_text(r: SweepResult) -> str:
    """The printed summary: counts, then the base and the best side by side."""
    b, s, c = r.best, r.base, r.counts
    lines = [
        f"sweep_thresholds: {c['run']} distinct settings run ({r.search} of {c['distinct']}; "
        f"{c['duplicates']} duplicate combinations dropped) on {r.num_videos} videos ({r.labels} labels) "
        f"in {r.seconds:.1f}s -> {r.output}",
        f"  {'':<16}{'base':>10}{'best':>10}",
    ]
    rows = [(f"F1@{fmt_num(t)}s", f"f1@{fmt_num(t)}s") for t in r.tolerances]
    main = fmt_num(r.tolerance_sec)
    rows += [(f"P@{main}s", "precision"), (f"R@{main}s", "recall"), ("segments", "num_segments")]
    rows += [("threshold", "threshold")]
    lines += [f"  {label:<16}{_fmt(s.get(k)):>10}{_fmt(b.get(k)):>10}" for label, k in rows]
    changed = [f"{k} {_short(s[k])} -> {_short(b[k])}" for k in b if k in SWEPT and k in s and b[k] != s[k]]
    if b["trial"] == 0:
        lines.append("  best = the base: no setting was at least as good at every tolerance and better")
    else:
        lines.append(f"  changed: {', '.join(changed)} (threshold from {b['threshold_from']})")
    lines.append("  wrote best.yaml (segment_folder --config), trials.csv, trials.json, result.json")
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
