"""What a segmentation run settles before any work: threshold, checkpoint, params and digests.

``segment_folder`` and ``stream`` both call :func:`resolve_run`, so a threshold, a checkpoint or a
setting means the same thing in both, and both stamp the same ``params`` and digests into
``segments.json`` (a re-run compares them to decide what is complete). THE threshold rule lives in
:func:`resolve_threshold`. No Ray.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laps_ray.config import check, to_dict
from laps_ray.core.auto_threshold import AUTO, is_auto
from laps_ray.core.energy import ENERGY_SOURCES
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.io.checkpoints import CheckpointError, load_tokenizer_config, verify_tokenizer
from laps_ray.models.tokenizer_config import TokenizerConfig
from laps_ray.pipeline.config import PipelineConfig, TokenizerRunConfig, section

if TYPE_CHECKING:
    from laps_ray.pipeline.outputs import VideoContext


def default_checkpoint() -> Path:
    """The shipped tokenizer checkpoint directory (``laps_ray/assets/tokenizer_small``), resolved on
    the caller's own copy of the package (so it works with ``ray job submit --working-dir``)."""
    return Path(__file__).resolve().parents[1] / "assets" / "tokenizer_small"


SHIPPED = "shipped"


def named_checkpoint(spec: str) -> Path:
    """A checkpoint given on a command line: ``shipped`` (or empty) is :func:`default_checkpoint`,
    anything else a path (a folder really named ``shipped`` is ``./shipped``)."""
    return default_checkpoint() if spec in ("", SHIPPED) else Path(spec)


def resolve_threshold(
    pipe: PipelineConfig, report: str = "", report_key: str = ""
) -> tuple[float | str, dict[str, Any]]:
    """THE threshold rule: where the on-threshold comes from.

    A calibration report (``--report FILE --report-key KEY``) wins over the default ``auto``; a fixed
    number and a report together are an error (ambiguous); otherwise ``auto`` (calibrated in the run,
    ``laps_ray.core.auto_threshold``) or the fixed number.

    Returns:
        ``(threshold, source)``: a number, or ``"auto"`` for the job to calibrate; ``source`` says where
        it comes from (``{"source": "fixed" | "report" | "auto", ...}``).

    Raises:
        ConfigError: a report key without a report (or the reverse), a fixed threshold and a report,
            or a report key for another energy source.
        laps_ray.io.reports.ReportError: unreadable report or missing key (lists the keys it has).
    """
    fixed = pipe.segmentation.threshold
    if report or report_key:
        check(bool(report), "report", "--report-key needs --report FILE")
        check(bool(report_key), "report_key", "--report needs --report-key KEY")
        check(
            is_auto(fixed),
            "segmentation.threshold",
            f"is {fixed} and a report is given too (--report {report}); use one of them",
        )
        head = report_key.split(".")[0]
        check(
            head not in ENERGY_SOURCES or head == pipe.energy.source,
            "report_key",
            f"{report_key!r} is a threshold for {head!r} energy but energy.source is {pipe.energy.source!r}",
        )
        from laps_ray.io.reports import read_report_threshold

        thr = read_report_threshold(report, report_key)
        return thr, {"source": "report", "report": str(Path(report).resolve()), "key": report_key}
    if is_auto(fixed):
        return AUTO, {"source": "auto"}
    return float(fixed), {"source": "fixed"}


def resolve_checkpoint(tokenizer: TokenizerRunConfig) -> Path:
    """The tokenizer checkpoint directory (the shipped one by default).

    Raises:
        CheckpointError: it has no ``model.safetensors`` (names the path).
    """
    path = Path(tokenizer.checkpoint) if tokenizer.checkpoint else default_checkpoint()
    if not (path / "model.safetensors").is_file() and not (path.is_file() and path.suffix == ".safetensors"):
        what = "the shipped default tokenizer checkpoint" if not tokenizer.checkpoint else "checkpoint"
        raise CheckpointError(
            f"{what} {path} is missing (no model.safetensors); train one with train_tokenizer or pass "
            "--checkpoint DIR"
        )
    return path


def check_tokenizer(pipe: PipelineConfig, checkpoint: Path, load: bool = False) -> TokenizerConfig:
    """The checkpoint's tokenizer config, checked against the window and grid settings.

    With ``load`` the weights are loaded once on the CPU too (files, header, config against weights),
    so a checkpoint that cannot work stops a job before outputs are deleted or Ray starts.

    Raises:
        CheckpointError: unreadable checkpoint (names the file and why).
        ConfigError: ``T`` or ``tracker.grid`` do not fit the tokenizer.
    """
    tok = verify_tokenizer(checkpoint) if load else load_tokenizer_config(checkpoint)
    check(tok.T == pipe.T, "T", f"is {pipe.T} but the tokenizer {checkpoint} was built for T={tok.T}")
    check(
        tok.num_points == pipe.tracker.grid**2,
        "tracker.grid",
        f"{pipe.tracker.grid} gives {pipe.tracker.grid**2} points; the tokenizer {checkpoint} takes "
        f"{tok.num_points}",
    )
    return tok


def segments_params(
    pipe: PipelineConfig, seg: SegmentationConfig, source: dict[str, Any], tok: TokenizerConfig
) -> dict[str, Any]:
    """The ``params`` block of every segments.json of a run."""
    return {
        "T": pipe.T,
        "stride": pipe.stride,
        "target_fps": pipe.decode.target_fps,
        "resize_shorter": pipe.decode.resize_shorter,
        "energy": to_dict(pipe.energy),
        "segmentation": {**to_dict(seg), "threshold_source": source},
        "gates": to_dict(pipe.gates),
        "tracker": {"name": pipe.tracker.name, "grid": pipe.tracker.grid},
        "tokenizer": {
            "name": tok.name,
            "codebook_size": tok.codebook_size,
            "hidden_dim": tok.hidden_dim,
            "motion_input": tok.motion_input
            if pipe.tokenizer.motion_input == "auto"
            else pipe.tokenizer.motion_input,
        },
        "codes_min_overlap": pipe.export.codes_min_overlap,
    }


def output_digest(pipe: PipelineConfig, params: dict[str, Any]) -> str:
    """Digest of every setting that changes a video's outputs (not paths, actors or shard size:
    sharded and unsharded runs produce the same files)."""
    relevant = {
        "params": params,
        "tracker": to_dict(pipe.tracker),
        "export": to_dict(pipe.export),
        "tokenizer": {"batch_size": pipe.tokenizer.batch_size, "amp": pipe.tokenizer.amp},
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


@dataclass
class ResolvedRun:
    """Everything a run settles before work starts (plain values: actors receive it).

    Attributes:
        pipeline: the settings, with ``segmentation.threshold`` resolved.
        threshold_source: where the threshold came from (``{"source": "fixed"}`` or the report+key).
        checkpoint: the tokenizer checkpoint directory; checkpoint_sha256: digest of its weights.
        tokenizer: its config.
        params: the ``params`` block of segments.json; config_sha256: :func:`output_digest`.
    """

    pipeline: PipelineConfig
    threshold_source: dict[str, Any]
    checkpoint: Path
    checkpoint_sha256: str
    tokenizer: TokenizerConfig
    params: dict[str, Any]
    config_sha256: str

    @property
    def segmentation(self) -> SegmentationConfig:
        return self.pipeline.segmentation


def resolve_run(
    pipe: PipelineConfig, report: str = "", report_key: str = "", load: bool = True
) -> ResolvedRun:
    """Threshold, checkpoint (loaded once on the CPU when ``load``), params and digests of a run.

    Args:
        pipe: the pipeline settings (or a job config that extends :class:`PipelineConfig`).
        report, report_key: a calibration report and the key of the threshold in it (or "").
        load: load the weights once to check them (jobs: yes; cheap callers: no).

    Raises:
        ConfigError, CheckpointError, laps_ray.io.reports.ReportError: one line naming the key or file.
    """
    from laps_ray.io.checkpoints import checkpoint_sha256

    pipe = section(pipe, PipelineConfig)  # a job config extends it: keep only the pipeline's part
    threshold, source = resolve_threshold(pipe, report, report_key)
    checkpoint = resolve_checkpoint(pipe.tokenizer)
    tok = check_tokenizer(pipe, checkpoint, load=load)
    resolved = replace(pipe, segmentation=replace(pipe.segmentation, threshold=threshold))
    params = segments_params(resolved, resolved.segmentation, source, tok)
    return ResolvedRun(
        pipeline=resolved,
        threshold_source=source,
        checkpoint=checkpoint,
        checkpoint_sha256=checkpoint_sha256(checkpoint),
        tokenizer=tok,
        params=params,
        config_sha256=output_digest(resolved, params),
    )


def video_context(
    run: ResolvedRun,
    key: str,
    source: str,
    out_dir: str | Path,
    duration_sec: float | None = None,
    auto: tuple[float, dict[str, Any]] | None = None,
) -> VideoContext:
    """The per-video output context of a run.

    Args:
        run: the resolved run.
        key, source, out_dir: the video's run.json key, input and output folder.
        duration_sec: ``video_duration_sec`` (None = from the timeline at the end).
        auto: for ``threshold: auto``, the calibrated value and this video's ``threshold_source``
            record (``laps_ray.pipeline.auto_calibration.threshold_record``); recorded in its
            segments.json, and its ``video.reliable`` decides whether the video is marked unreliable.
    """
    from laps_ray.pipeline.outputs import VideoContext, with_threshold

    pipe = run.pipeline  # with `auto` uncalibrated the state machine refuses to run (core.segmentation)
    ctx = VideoContext(
        key=key,
        source=source,
        out_dir=str(out_dir),
        energy=pipe.energy,
        segmentation=pipe.segmentation,
        export=pipe.export,
        T=pipe.T,
        stride=pipe.stride,
        target_fps=pipe.decode.target_fps,
        params=run.params,
        checkpoint_sha256=run.checkpoint_sha256,
        config_sha256=run.config_sha256,
        duration_sec=duration_sec,
    )
    return ctx if auto is None else with_threshold(ctx, *auto)
