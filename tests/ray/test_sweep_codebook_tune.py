"""sweep_codebook: Ray Tune over codebook sizes, each trial a short Ray Train run; its table and plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import CONFIGS, write_synthetic_tracks

from laps_ray.jobs.sweep_codebook import load_sweep_config, run, summary


@pytest.mark.slow  # ~20-40 s on 2 cores
def test_two_trial_sweep_writes_table_plot_and_names_best(ray_local, tmp_path):
    tracks = write_synthetic_tracks(tmp_path / "tracks", num_videos=4, windows=12)
    out = tmp_path / "sweep"
    cfg = load_sweep_config(
        CONFIGS / "sweep_codebook.yaml",
        [
            f"tracks={tracks}", f"output={out}", "model=tiny", "codebook_sizes=[16,64]", "train.epochs=2",
            "train.batch_size=16", "train.val_fraction=0.25", "train.threads=1",
        ],
    )  # fmt: skip
    res = run(cfg)
    assert res.exit_code == 0
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["codebook_size"], r["true_codebook_size"], r["levels"]) for r in rows] == [
        ("16", "15", "5x3"),
        ("64", "64", "8x8"),
    ]
    table = json.loads((out / "sweep.json").read_text())
    assert table["metric"] == "val/loss" and len(table["trials"]) == 2
    for t in table["trials"]:
        assert t["status"] in ("done", "stopped early (ASHA)"), t
        assert 1 <= t["epochs_run"] <= 2 and t["best_val_loss"] > 0
        assert t["utilisation"] == pytest.approx(t["final_unique_codes"] / t["true_codebook_size"])
        assert (Path(t["trial_dir"]) / "metrics.jsonl").is_file()
    best = table["best"]
    assert best["codebook_size"] in (16, 64)
    assert best["best_val_loss"] == min(
        t["best_val_loss"] for t in table["trials"] if not t["collapsed"] or best["all_collapsed"]
    )
    assert (out / "sweep.png").stat().st_size > 5_000
    assert f"best: codebook_size={best['codebook_size']}" in summary(res)
    assert (out / "tune").is_dir()
