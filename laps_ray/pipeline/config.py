"""The pipeline's typed config: every setting that changes what a window becomes, defined once.

Jobs compose these sections into their own configs by inheritance, so their YAML keys stay flat
(``segmentation.threshold``, ``decode.target_fps``, ``T`` ...) and each default lives here only:

* :class:`WindowingConfig` — decode, tracker and window geometry: what ``preprocess`` needs to turn a
  video into windows of tracks.
* :class:`PipelineConfig` — windowing plus gates, energy, segmentation, export and the tokenizer at
  inference: what ``segment_folder``, ``stream`` and the actors need to turn windows into segments.

The pipeline and the actors take these types, never a job's whole config; ``section(cfg)`` cuts the
section out of a job config that extends it. No Ray, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from laps_ray.config import check, check_choice
from laps_ray.core.energy import EnergyConfig
from laps_ray.core.gates import GateConfig
from laps_ray.core.segmentation import SegmentationConfig
from laps_ray.core.windows import DEFAULT_STRIDE, DEFAULT_T
from laps_ray.io.decode import DecodeConfig
from laps_ray.io.exports import ExportConfig
from laps_ray.models.tokenizer_config import MOTION_INPUTS
from laps_ray.tracking.base import TrackerConfig

S = TypeVar("S")


@dataclass
class TokenizerRunConfig:
    """The tokenizer at inference.

    Attributes:
        checkpoint: checkpoint directory; "" = the shipped ``laps_ray/assets/tokenizer_small``.
        batch_size: rows of every tokenizer forward call (fixed shape; see
            ``laps_ray.models.inference``: part of the output digest).
        device: ``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:K``.
        amp: fp16 autocast on CUDA.
        motion_input: what the tokenizer is fed: ``auto`` = what the checkpoint was trained on (its
            ``motion_input``), or ``velocity`` / ``foreground`` to override it (comparisons).
    """

    checkpoint: str = ""
    batch_size: int = 32
    device: str = "auto"
    amp: bool = True
    motion_input: str = "auto"

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check_choice(self.motion_input, ("auto", *MOTION_INPUTS), "motion_input")


@dataclass
class WindowingConfig:
    """Video → windows of point tracks.

    Attributes:
        decode: decoding (timestamp resampling to ``target_fps``, resize, which files).
        tracker: which tracker and its knobs (``grid**2`` points per window).
        T: frames per window (15 velocity steps = the tokenizer's 15 tokens).
        stride: frames between window starts.
        batch_windows: windows per tracker/tokenizer batch (memory vs. call overhead; results do
            not depend on it).
    """

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    T: int = DEFAULT_T
    stride: int = DEFAULT_STRIDE
    batch_windows: int = 8

    def __post_init__(self) -> None:
        check(self.T >= 2, "T", f"must be >= 2, got {self.T}")
        check(self.stride >= 1, "stride", f"must be >= 1, got {self.stride}")
        check(self.batch_windows >= 1, "batch_windows", f"must be >= 1, got {self.batch_windows}")


@dataclass
class PipelineConfig(WindowingConfig):
    """Windows → gates, tokens, energies, segments and exports (``segment_folder`` and ``stream``
    share it, so the same settings give the same windows, energies and segments).

    Attributes:
        gates: pre-gate (pixels) and motion gate (speeds) that skip certainly-static windows.
        energy: energy source, mode and causal smoothing.
        segmentation: the state machine (``threshold`` None until resolved from a report).
        export: clips, codes sidecars, plot.
        tokenizer: checkpoint and inference settings.
    """

    gates: GateConfig = field(default_factory=GateConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    tokenizer: TokenizerRunConfig = field(default_factory=TokenizerRunConfig)


def section(cfg: Any, cls: type[S]) -> S:
    """The ``cls`` part of a config that extends it (a job config → its :class:`PipelineConfig`).

    The values are shared, not copied (sections are dataclasses the pipeline does not mutate).
    """
    return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})  # type: ignore[arg-type]
