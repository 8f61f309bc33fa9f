"""sweep_codebook: Ray Tune over codebook sizes, each trial a short Ray Train run; its table and plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_training import write_synthetic_tracks

from laps_ray.config import ConfigError
from laps_ray.jobs.sweep_codebook import load_sweep_config, run, summary
from laps_ray.training.sweep_report import pick_best

REPO = Path(__file__).resolve().parents[1]


def test_config_model_shorthand_and_validation():
    cfg = load_sweep_config(
        REPO / "configs" / "sweep_codebook.yaml", ["model=tiny", "codebook_sizes=[16,64]"]
    )
    assert (
        cfg.train.model.name == "tiny" and cfg.train.model.num_points == 16 and cfg.codebook_sizes == [16, 64]
    )
    assert (cfg.train.num_workers, cfg.train.cpus_per_worker, cfg.cpus_per_trial) == (1, 0.5, 0.5)
    with pytest.raises(ConfigError, match="codebook_sizes"):
        load_sweep_config(None, ["codebook_sizes=[100]"])
    with pytest.raises(ConfigError, match="val_fraction"):
        load_sweep_config(None, ["train.val_fraction=0"])


def test_best_is_lowest_val_loss_among_non_collapsed():
    rows = [
        {"codebook_size": 16, "best_val_loss": 0.5, "collapsed": False, "utilisation": 0.9},
        {"codebook_size": 2048, "best_val_loss": 0.1, "collapsed": True, "utilisation": 0.01},
        {"codebook_size": 256, "best_val_loss": 0.3, "collapsed": False, "utilisation": 0.4},
        {"codebook_size": 64, "best_val_loss": None, "collapsed": None, "utilisation": None},
    ]
    best = pick_best(rows)
    assert best["codebook_size"] == 256 and not best["all_collapsed"]
    assert pick_best([rows[1]])["all_collapsed"]


@pytest.mark.ray
def test_two_trial_sweep_writes_table_plot_and_names_best(ray_local, tmp_path):
    tracks = write_synthetic_tracks(tmp_path / "tracks", num_videos=4, windows=12)
    out = tmp_path / "sweep"
    cfg = load_sweep_config(
        REPO / "configs" / "sweep_codebook.yaml",
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
