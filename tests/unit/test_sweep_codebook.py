"""sweep_codebook without Ray: its config and the choice of the best trial (the Tune sweep:
tests/ray/test_sweep_codebook_tune.py)."""

from __future__ import annotations

import pytest
from helpers import CONFIGS

from laps_ray.config import ConfigError
from laps_ray.jobs.sweep_codebook import load_sweep_config
from laps_ray.training.sweep_report import pick_best


def test_config_model_shorthand_and_validation():
    cfg = load_sweep_config(CONFIGS / "sweep_codebook.yaml", ["model=tiny", "codebook_sizes=[16,64]"])
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
