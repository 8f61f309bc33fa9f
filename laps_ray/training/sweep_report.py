"""What a codebook sweep leaves in its output folder: the trial table and its plot.

One row per trial (:func:`trial_row`), read back from the trial's own ``metrics.jsonl`` so trials
that ASHA stopped early are complete too; the best trial (:func:`pick_best`: lowest best ``val/loss``
among trials that did not collapse); ``sweep.csv`` + ``sweep.json`` (:func:`write_tables`) and
``sweep.png`` (:func:`plot_sweep`: best validation loss vs codebook utilisation). No Ray.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from laps_ray.io.atomic import atomic_path, write_json_atomic, write_text_atomic
from laps_ray.models.fsq_levels import levels_for_codebook_size, true_codebook_size
from laps_ray.training.report import epoch_records, read_metrics

METRIC = "val/loss"  # trials are ranked by it (lower is better)


def trial_row(
    folder: Path, codebook_size: int, lr: float, max_epochs: int, collapse_threshold: float, error: str | None
) -> dict[str, Any]:
    """One table row from a trial's ``metrics.jsonl`` (complete even for trials ASHA stopped).

    Args:
        folder: the trial's training output folder.
        codebook_size: nominal codebook size K of the trial.
        lr: its learning rate.
        max_epochs: epochs a trial runs unless stopped early.
        collapse_threshold: a trial collapsed when unique / true codes is below this.
        error: the trial's one-line error, or None.
    """
    epochs = epoch_records(read_metrics(folder))
    row: dict[str, Any] = {
        "codebook_size": codebook_size,
        "true_codebook_size": true_codebook_size(codebook_size),
        "levels": "x".join(str(v) for v in levels_for_codebook_size(codebook_size)),
        "lr": lr,
        "best_val_loss": None,
        "best_epoch": None,
        "epochs_run": len(epochs),
        "stopped_early": False,
        "final_val_loss": None,
        "final_unique_codes": None,
        "utilisation": None,
        "perplexity": None,
        "entropy_norm": None,
        "val_accuracy": None,
        "val_epe_px": None,
        "collapsed": None,
        "status": "failed" if error or not epochs else "done",
        "error": error,
        "trial_dir": str(folder),
    }
    if not epochs:
        return row
    scored = [r for r in epochs if r.get("val/loss") is not None]
    final = epochs[-1]
    if scored:
        best = min(scored, key=lambda r: r["val/loss"])
        row.update(best_val_loss=best["val/loss"], best_epoch=best["epoch"])
    unique = final.get("val/unique_codes")
    util = unique / row["true_codebook_size"] if unique is not None else None
    row.update(
        final_val_loss=final.get("val/loss"),
        final_unique_codes=unique,
        utilisation=util,
        perplexity=final.get("val/perplexity"),
        entropy_norm=final.get("val/entropy_norm"),
        val_accuracy=final.get("val/accuracy"),
        val_epe_px=final.get("val/epe_px"),
        collapsed=bool(util is not None and util < collapse_threshold),
        stopped_early=len(epochs) < max_epochs and not error,
    )
    if row["stopped_early"]:
        row["status"] = "stopped early (ASHA)"
    return row


def pick_best(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Lowest best validation loss among trials that did not collapse (else among all, flagged)."""
    scored = [r for r in rows if r["best_val_loss"] is not None]
    healthy = [r for r in scored if not r["collapsed"]]
    pool = healthy or scored
    if not pool:
        return None
    best = dict(min(pool, key=lambda r: r["best_val_loss"]))
    best["all_collapsed"] = not healthy
    return best


TABLE_COLUMNS = [
    "codebook_size", "true_codebook_size", "levels", "lr", "best_val_loss", "best_epoch", "epochs_run",
    "stopped_early", "final_val_loss", "final_unique_codes", "utilisation", "perplexity", "entropy_norm",
    "val_accuracy", "val_epe_px", "collapsed", "status", "error", "trial_dir",
]  # fmt: skip


def write_tables(out: Path, rows: Sequence[dict[str, Any]], best: dict[str, Any] | None) -> None:
    """``sweep.csv`` (rows) and ``sweep.json`` (rows + best), each written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in TABLE_COLUMNS})
    write_text_atomic(out / "sweep.csv", buf.getvalue())
    clean = [{k: _json_value(v) for k, v in r.items()} for r in rows]
    best_clean = {k: _json_value(v) for k, v in best.items()} if best else None
    write_json_atomic(
        out / "sweep.json", {"metric": METRIC, "mode": "min", "best": best_clean, "trials": clean}
    )


def plot_sweep(rows: Sequence[dict[str, Any]], best: dict[str, Any] | None, path: Path) -> None:
    """Best validation loss vs codebook utilisation (unique / true codes), one point per trial."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = [r for r in rows if r["best_val_loss"] is not None and r["utilisation"] is not None]
    sizes = sorted({r["codebook_size"] for r in pts})
    cmap = plt.get_cmap("viridis", max(2, len(sizes)))
    for i, k in enumerate(sizes):
        mine = [r for r in pts if r["codebook_size"] == k]
        ax.scatter(
            [100 * r["utilisation"] for r in mine],
            [r["best_val_loss"] for r in mine],
            s=60,
            color=cmap(i),
            label=f"{k} ({true_codebook_size(k)} codes)",
            marker="o",
        )
        for r in mine:
            tag = f" lr {r['lr']:.0e}" if len({q["lr"] for q in rows}) > 1 else ""
            ax.annotate(f"{k}{tag}", (100 * r["utilisation"], r["best_val_loss"]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")  # fmt: skip
    if best and best.get("utilisation") is not None:
        ax.scatter([100 * best["utilisation"]], [best["best_val_loss"]], s=220, facecolors="none",
                   edgecolors="red", linewidths=2, label="best")  # fmt: skip
    ax.set(xlabel="codebook utilisation: unique val codes / true codes (%)", ylabel="best validation loss",
           title="codebook sweep")  # fmt: skip
    ax.grid(alpha=0.3)
    if pts:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v
