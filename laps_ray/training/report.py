"""What a training run leaves in its output folder, and how it is summarised.

Layout of ``<output>/``::

    metrics.jsonl            one JSON object per report (``"report": "step"`` or ``"epoch"``)
    checkpoints/epoch_0001/  every epoch: model.safetensors, config.yaml, meta.json, train_state.pt
    latest                   text: path of the newest epoch checkpoint (relative to <output> if inside)
    best/                    lowest val/loss so far (train/loss without a validation split); no train state
    summary.json             final epoch, best epoch, codebook health, collapse warning
    curves.png               loss, accuracy / endpoint error, ΔAUC / "no motion" shares, codes vs epoch

:class:`RunRecorder` receives every report (directly in-process, or from the Ray Train controller
callback on the driver's node) and maintains ``metrics.jsonl``, ``latest`` and ``best/``; every file
is replaced atomically. No Ray here.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from laps_ray.io.atomic import atomic_dir, atomic_path, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
LATEST_FILE = "latest"
TRAIN_STATE_FILE = "train_state.pt"


def checkpoint_name(epoch: int) -> str:
    """Directory name of an epoch checkpoint (``epoch_0007``)."""
    return f"epoch_{epoch:04d}"


def score_of(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """The key and value a checkpoint is ranked by: ``val/loss``, else ``train/loss``; None if absent."""
    for key in ("val/loss", "train/loss"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return key, float(value)
    return None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All reports of a ``metrics.jsonl`` (a folder or the file); [] when it does not exist."""
    p = Path(path)
    if p.is_dir():
        p = p / METRICS_FILE
    if not p.is_file():
        return []
    out = []
    lines = p.read_text().splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            # Only the last line can be cut short (a killed run); anything else is corruption.
            if i == len(lines):
                log.warning("%s: ignoring a truncated last line", p)
                continue
            raise ValueError(f"{p}:{i}: not JSON ({exc})") from exc
    return out


def epoch_records(reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The epoch reports, one per epoch (the last one wins), in epoch order."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for r in reports:
        if r.get("report") == "epoch":
            by_epoch[int(r["epoch"])] = r
    return [by_epoch[e] for e in sorted(by_epoch)]


class RunRecorder:
    """Maintains ``metrics.jsonl``, ``latest`` and ``best/`` of one training output folder.

    Args:
        output: the run's output folder.
        keep: in-process runs only: keep this many newest epoch checkpoints (0 = all). Under Ray,
            ``CheckpointConfig(num_to_keep)`` does this.
        resume_step: continuing a run: reports after this step (written after the checkpoint being
            resumed from) are dropped; the best score so far is read back. None starts afresh
            (an existing ``metrics.jsonl`` is replaced).
    """

    def __init__(self, output: Path, keep: int = 0, resume_step: int | None = None) -> None:
        self.output = Path(output)
        self.keep = keep
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.output.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None:
            kept = [r for r in read_metrics(self.output) if int(r.get("step", 0)) <= resume_step]
        with atomic_path(self.output / METRICS_FILE) as tmp:
            tmp.write_text("".join(_json_line(r) for r in kept))
        for r in epoch_records(kept):
            self._update_best_score(r)

    @property
    def metrics_path(self) -> Path:
        return self.output / METRICS_FILE

    def _update_best_score(self, metrics: dict[str, Any]) -> bool:
        scored = score_of(metrics)
        if scored is None or (self.best_score is not None and scored[1] >= self.best_score):
            return False
        self.best_score, self.best_epoch = scored[1], int(metrics["epoch"])
        return True

    def record(
        self,
        metrics: dict[str, Any],
        checkpoint_ref: str | None = None,
        materialize: Callable[[str], Any] | None = None,
    ) -> None:
        """Append one report; with a checkpoint, update ``latest`` and (if it is the best) ``best/``.

        Args:
            metrics: the report (rank 0's, already global).
            checkpoint_ref: where the checkpoint is stored (a path, or a URI on shared storage).
            materialize: ``f(dir)`` copies the checkpoint into ``dir`` (e.g. ``Checkpoint.to_directory``).
        """
        with open(self.metrics_path, "a") as f:
            f.write(_json_line({**metrics, "time": round(time.time(), 3)}))
            f.flush()
            os.fsync(f.fileno())
        if checkpoint_ref is None:
            return
        write_text_atomic(self.output / LATEST_FILE, self._relative(checkpoint_ref) + "\n")
        if metrics.get("report") == "epoch" and self._update_best_score(metrics) and materialize is not None:
            self._replace_best(materialize)
            log.info(
                "epoch %s is the best so far (%s) -> %s", metrics["epoch"], self.best_score, self.best_dir
            )

    def record_local(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        """In-process runs: move the checkpoint into ``checkpoints/`` first, then :meth:`record`."""
        if checkpoint_dir is None:
            self.record(metrics)
            return
        dest = self.output / CHECKPOINTS_DIR / checkpoint_dir.name
        _replace_dir(dest, lambda tmp: shutil.copytree(checkpoint_dir, tmp))
        self.record(metrics, str(dest), lambda d: shutil.copytree(dest, d, dirs_exist_ok=True))
        if self.keep > 0:
            epochs = sorted((self.output / CHECKPOINTS_DIR).glob("epoch_*"))
            for old in epochs[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)

    @property
    def best_dir(self) -> Path:
        return self.output / BEST_DIR

    def _replace_best(self, materialize: Callable[[str], Any]) -> None:
        def fill(tmp: Path) -> None:
            materialize(str(tmp))
            (tmp / TRAIN_STATE_FILE).unlink(missing_ok=True)  # best/ is for inference

        _replace_dir(self.best_dir, fill)

    def _relative(self, ref: str) -> str:
        try:
            return str(Path(ref).resolve().relative_to(self.output.resolve()))
        except ValueError:
            return ref  # outside the output folder (custom storage_path or a URI)


def latest_checkpoint(output: str | Path) -> str | None:
    """The checkpoint the ``latest`` pointer names (an absolute path or URI), or None."""
    pointer = Path(output) / LATEST_FILE
    if not pointer.is_file():
        return None
    ref = pointer.read_text().strip()
    if not ref:
        return None
    if "://" in ref or Path(ref).is_absolute():
        return ref
    return str((Path(output) / ref).resolve())


def summarize(reports: Sequence[dict[str, Any]], output: str | Path | None = None) -> dict[str, Any]:
    """Summary of a run's reports: final and best epoch, codebook health, collapse warnings.

    Raises:
        ValueError: there is no epoch report.
    """
    epochs = epoch_records(reports)
    if not epochs:
        raise ValueError("no epoch was completed (metrics.jsonl has no epoch report)")
    final = epochs[-1]
    scored = [(score_of(r), r) for r in epochs]
    scored = [(s, r) for s, r in scored if s is not None]
    best: dict[str, Any] = {}
    if scored:
        (key, value), rec = min(scored, key=lambda x: x[0][1])
        best = {
            "epoch": rec["epoch"],
            "step": rec["step"],
            "score_key": key,
            "score": value,
            "val/loss": rec.get("val/loss"),
            "train/loss": rec.get("train/loss"),
            "path": BEST_DIR,
        }
    split = final.get("codebook_split", "val" if "val/loss" in final else "train")
    codebook = {
        k: final.get(f"{split}/{k}")
        for k in (
            "unique_codes",
            "true_codebook_size",
            "usage_ratio",
            "dead_code_ratio",
            "perplexity",
            "entropy_norm",
        )
    }
    warned = [r["epoch"] for r in epochs if r.get("collapse_warning")]
    summary = {
        "epochs_completed": len(epochs),
        "last_epoch": final["epoch"],
        "steps": final["step"],
        "final": final,
        "best": best,
        "codebook": {"split": split, "codebook_size": final.get("codebook_size"), **codebook},
        "collapse_warning": final.get("collapse_warning"),
        "collapse_warning_epochs": warned,
        "first_epoch": {
            k: epochs[0].get(k) for k in ("epoch", "train/loss", "val/loss", "val/accuracy", "train/accuracy")
        },
        "train_seconds": round(sum(float(r.get("epoch_seconds") or 0) for r in epochs), 1),
    }
    if output is not None:
        summary["output"] = str(output)
    return summary


def write_summary(output: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``summary.json`` and ``curves.png`` from ``metrics.jsonl``; return the summary."""
    output = Path(output)
    reports = read_metrics(output)
    summary = {**summarize(reports, output), **(extra or {})}
    write_json_atomic(output / SUMMARY_FILE, summary)
    plot_curves(reports, output / CURVES_FILE)
    return summary


def plot_curves(reports: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Four panels vs epoch: loss; accuracy and endpoint error; motion reconstruction (ΔAUC, "no
    motion" shares); perplexity and unique codes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    epochs = epoch_records(reports)
    if not epochs:
        raise ValueError("nothing to plot: no epoch report")
    ep = np.array([r["epoch"] for r in epochs], float)

    def series(key: str, recs: Sequence[dict[str, Any]] = epochs) -> np.ndarray:
        return np.array([np.nan if r.get(key) is None else float(r[key]) for r in recs])

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    ax = axes[0]
    steps = [r for r in reports if r.get("report") == "step"]
    if steps:
        # Step reports on a fractional-epoch axis, interpolated from the epoch ends' step counts.
        knots_s = np.concatenate([[0.0], series("step")])
        knots_e = np.concatenate([[ep[0] - 1], ep])
        x = np.interp(series("step", steps), knots_s, knots_e)
        ax.plot(x, series("train/loss", steps), color="tab:blue", alpha=0.3, lw=1, label="train (steps)")
    ax.plot(ep, series("train/loss"), "o-", color="tab:blue", label="train")
    if any(r.get("val/loss") is not None for r in epochs):
        ax.plot(ep, series("val/loss"), "s-", color="tab:orange", label="val")
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.legend()
    ax.grid(alpha=0.3)

    ax = axes[1]
    for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
        if any(r.get(f"{split}/accuracy") is not None for r in epochs):
            ax.plot(ep, series(f"{split}/accuracy"), "o-", color=color, label=f"{split} accuracy")
            ax.plot(
                ep, series(f"{split}/accuracy_moving"), "o--", color=color, label=f"{split} acc. (moving)"
            )
    ax.set(xlabel="epoch", ylabel="displacement accuracy", title="accuracy / endpoint error", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    split = epochs[-1].get("codebook_split", "train")
    ax2.plot(ep, series(f"{split}/epe_px"), "^:", color="tab:green", label=f"{split} EPE (px)")
    ax2.set_ylabel("endpoint error (px)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="center right")

    ax = axes[2]
    # The measures that expose a decoder answering "no motion" everywhere (models/recon_metrics.py).
    for key, style, label in (
        ("delta_auc", "o-", "ΔAUC (1-10 px)"),
        ("accuracy_moving", "s-", "accuracy (moving ≥ 0.5 px)"),
        ("accuracy_moving_ceiling", "s:", "same, exact displacement rounded"),
        ("static_pred_share", "^--", '"no motion" predicted'),
        ("static_true_share", "v:", '"no motion" true'),
    ):
        ax.plot(ep, series(f"{split}/{key}"), style, label=f"{split} {label}")
    ax.set(xlabel="epoch", ylabel="share", title="motion reconstruction", ylim=(0, 1))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[3]
    true_k = epochs[-1].get(f"{split}/true_codebook_size")
    ax.plot(ep, series(f"{split}/perplexity"), "o-", color="tab:purple", label=f"{split} perplexity")
    ax.plot(ep, series(f"{split}/unique_codes"), "s-", color="tab:red", label=f"{split} unique codes")
    if true_k:
        ax.axhline(true_k, color="gray", ls="--", lw=1, label=f"true codebook size {true_k}")
        ax.axhline(0.05 * true_k, color="tab:red", ls=":", lw=1, label="collapse line (5 %)")
    ax.set(xlabel="epoch", ylabel="codes", title="codebook usage", yscale="log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    warn = epochs[-1].get("collapse_warning")
    if warn:
        fig.suptitle("WARNING: codebook collapse", color="red")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def _json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, allow_nan=False, default=str) + "\n"


def _replace_dir(target: Path, fill: Callable[[Path], Any]) -> None:
    """Build a directory with ``fill(tmp)`` (which creates it) and swap it in for ``target``."""
    with atomic_dir(target, create=False) as tmp:
        fill(tmp)
