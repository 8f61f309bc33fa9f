"""evaluate_tokenizer: AMPLIFY's reconstruction measures for any tokenizer checkpoint on any tracks.

    python -m laps_ray.jobs.evaluate_tokenizer --checkpoint runs/tok/best --tracks tracks/ [--output F.json]

``--checkpoint`` is a checkpoint directory (``shipped``: the package's default) and ``--tracks`` a
folder of ``.h5`` track files (from the preprocess job; videos the checkpoint did not train on, for an
honest figure). Prints and writes (``--output``, JSON) the measures of
:mod:`laps_ray.models.recon_metrics` — accuracy on all points and on moving points (true displacement
≥ 0.5 px), ΔAUC (1–10 px), pixel accuracy, endpoint error (px), the "no motion" share predicted vs
true — and codebook use against the TRUE code count (1920 for "2048"). Same eval step as the training
run's ``val/*`` line. Runs in this process on the CPU (or ``device=cuda``); no Ray.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from laps_ray.config import check
from laps_ray.jobs._cli import Flag, run_job


@dataclasses.dataclass
class EvaluateTokenizerConfig:
    """Options of the job.

    Attributes:
        checkpoint: tokenizer checkpoint directory, or ``shipped``.
        tracks: track file or folder.
        output: JSON file to write (empty: print only).
        batch_size: windows per forward pass.
        device: ``cpu`` or ``cuda``.
    """

    checkpoint: str = "shipped"
    tracks: str = ""
    output: str = ""
    batch_size: int = 64
    device: str = "cpu"

    def __post_init__(self) -> None:
        check(bool(self.tracks), "tracks", "is required (--tracks DIR of .h5 files from the preprocess job)")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")


@dataclasses.dataclass
class EvaluateTokenizerResult:
    """What :func:`run` measured."""

    checkpoint: str
    files: int
    metrics: dict[str, Any]
    output: str | None


def run(cfg: EvaluateTokenizerConfig) -> EvaluateTokenizerResult:
    """Load the checkpoint, score every window of the tracks, write the JSON.

    Raises:
        laps_ray.io.checkpoints.CheckpointError: unreadable checkpoint.
        laps_ray.io.track_store.TrackStoreError / FileNotFoundError: no track files.
        ValueError: the tracks do not fit the model (names the mismatch).
    """
    from laps_ray.io.atomic import write_json_atomic
    from laps_ray.io.checkpoints import load_tokenizer
    from laps_ray.io.track_store import list_track_files
    from laps_ray.pipeline.resolve import named_checkpoint
    from laps_ray.training.evaluate import evaluate_tracks

    ckpt = named_checkpoint(cfg.checkpoint)
    files = list_track_files(cfg.tracks)
    if not files:
        raise FileNotFoundError(f"{cfg.tracks}: no track files (*.h5); run the preprocess job first")
    model, _ = load_tokenizer(ckpt, cfg.device)
    model.eval()
    metrics = evaluate_tracks(model, files, batch_size=cfg.batch_size)
    out = None
    if cfg.output:
        payload = {
            "checkpoint": str(ckpt),
            "tracks": str(cfg.tracks),
            "files": len(files),
            "metrics": metrics,
        }
        write_json_atomic(Path(cfg.output), payload)
        out = cfg.output
    return EvaluateTokenizerResult(str(ckpt), len(files), metrics, out)


ROWS = (
    ("accuracy", "accuracy (all points)"),
    ("accuracy_moving", "accuracy (moving >= 0.5 px)"),
    ("accuracy_moving_ceiling", "  ceiling (exact, rounded)"),
    ("delta_auc", "ΔAUC (1-10 px)"),
    ("pixel_accuracy", "pixel accuracy (< 1 px)"),
    ("epe_px", "endpoint error (px)"),
    ("static_pred_share", '"no motion" predicted'),
    ("static_true_share", '"no motion" true'),
    ("unique_codes", "codes used"),
    ("usage_ratio", "codebook use (of true count)"),
    ("perplexity", "perplexity"),
)


def summary(r: EvaluateTokenizerResult) -> str:
    """A two-column table of the measures."""
    lines = [
        f"evaluate_tokenizer: {r.checkpoint} on {r.files} track file(s), {r.metrics['eval/windows']} windows"
    ]
    for key, label in ROWS:
        v = r.metrics.get(f"eval/{key}")
        lines.append(f"  {label:<32} {'n/a' if v is None else (f'{v:.4f}' if isinstance(v, float) else v)}")
    if r.output:
        lines.append(f"  -> {r.output}")
    return "\n".join(lines)


FLAGS = (
    Flag("--checkpoint", "checkpoint", "checkpoint dir ('shipped' = the default one)"),
    Flag("--tracks", "tracks", "track file or folder (.h5 from the preprocess job)"),
    Flag("--output", "output", "JSON file to write"),
)


def main(argv: list[str] | None = None) -> None:
    run_job("evaluate_tokenizer", __doc__, FLAGS, EvaluateTokenizerConfig, run, summary, argv)


if __name__ == "__main__":
    main()
