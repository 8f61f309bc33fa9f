"""Fine-tuning from a checkpoint (``--init``), motion-weighted window sampling, and evaluate_tokenizer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import train_cfg

from laps_ray.config import ConfigError
from laps_ray.io.checkpoints import load_tokenizer
from laps_ray.jobs.evaluate_tokenizer import main as evaluate_main
from laps_ray.jobs.train_tokenizer import run
from laps_ray.training.data import WindowArrays, motion_weights, shard_batches
from laps_ray.training.report import epoch_records, read_metrics


def _arrays(moving: list[bool]) -> WindowArrays:
    m = len(moving)
    targets = np.full((m, 1, 15, 4), 112, np.int16)  # 112 = "no motion" for rel_grid 15
    for i, mv in enumerate(moving):
        if mv:
            targets[i, :, :, :2] = 113  # half the steps move
    zeros = np.zeros((m, 1, 15, 4, 2), np.float32)
    return WindowArrays(zeros, targets, np.ones((m, 1, 16, 4), bool), np.ones((m, 2), np.float32),
                        np.zeros(m, np.int32), [])  # fmt: skip


def test_motion_sampling_draws_moving_windows_more_often_and_ranks_split_one_draw():
    arrays = _arrays([True] * 5 + [False] * 5)
    w = motion_weights(arrays, floor=0.1)
    np.testing.assert_allclose(w, [0.6] * 5 + [0.1] * 5)
    draws = np.concatenate([np.concatenate(list(shard_batches(10, 4, e, 0, weights=w))) for e in range(200)])
    moving_share = np.isin(draws, range(5)).mean()
    assert moving_share == pytest.approx(0.6 / 0.7, abs=0.03)  # 3.0 / (3.0 + 0.5)
    ranks = [np.concatenate(list(shard_batches(10, 4, 3, 0, r, 2, weights=w))) for r in (0, 1)]
    whole = np.concatenate(list(shard_batches(10, 4, 3, 0, weights=w)))
    np.testing.assert_array_equal(np.sort(np.concatenate(ranks)), np.sort(whole))
    with pytest.raises(ValueError, match="weights"):
        list(shard_batches(10, 4, 3, 0, weights=w[:3]))


def test_fine_tuning_starts_from_the_checkpoint_and_checks_the_architecture(synthetic_tracks, tmp_path):
    base = tmp_path / "base"
    run(train_cfg(synthetic_tracks, base, "epochs=2", "backend=local"))
    start, _ = load_tokenizer(base / "best")
    # Almost no learning rate: the fine-tuned weights are the checkpoint's (a fresh init is not).
    ft = tmp_path / "ft"
    run(train_cfg(synthetic_tracks, ft, "epochs=1", "backend=local", f"init_from={base / 'best'}",
                  "optim.lr=1e-12", "model.dropout=0.0"))  # fmt: skip
    tuned, tuned_cfg = load_tokenizer(ft / "best")
    assert tuned_cfg.dropout == 0.0  # a training-only setting may differ from the checkpoint's
    for (name, a), b in zip(start.state_dict().items(), tuned.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    fresh = tmp_path / "fresh"
    run(train_cfg(synthetic_tracks, fresh, "epochs=1", "backend=local", "optim.lr=1e-12"))
    other, _ = load_tokenizer(fresh / "best")
    assert not torch.allclose(other.in_proj.weight, start.in_proj.weight)
    assert json.loads((ft / "best" / "meta.json").read_text())["init_from"] == str((base / "best").resolve())
    # The architecture comes from the checkpoint: conflicting model settings are named.
    with pytest.raises(ConfigError, match=r"model\.hidden_dim=32 vs 16"):
        run(train_cfg(synthetic_tracks, tmp_path / "bad", "backend=local", f"init_from={base / 'best'}",
                      "model.hidden_dim=32"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"model\.num_points=16 vs 400"):  # shipped = small, 400 points
        run(train_cfg(synthetic_tracks, tmp_path / "bad2", "backend=local", "init_from=shipped"))
    # --resume wins over init_from: the run continues from its own checkpoint.
    run(train_cfg(synthetic_tracks, ft, "epochs=2", "backend=local", f"init_from={base / 'best'}",
                  "optim.lr=1e-12", "model.dropout=0.0", "resume=true"))  # fmt: skip
    assert [r["epoch"] for r in epoch_records(read_metrics(ft))] == [1, 2]


def test_evaluate_tokenizer_agrees_with_the_training_runs_validation(synthetic_tracks, tmp_path, capsys):
    out = tmp_path / "run"
    run(train_cfg(synthetic_tracks, out, "epochs=1", "backend=local"))
    val_videos = json.loads((out / "run.json").read_text())["split"]["val"]
    val_dir = tmp_path / "val"
    val_dir.mkdir()
    for name in val_videos:
        shutil.copy2(synthetic_tracks / name, val_dir / name)
    report = tmp_path / "eval.json"
    evaluate_main(["--checkpoint", str(out / "best"), "--tracks", str(val_dir), "--output", str(report)])
    printed = capsys.readouterr().out
    assert "accuracy (moving >= 0.5 px)" in printed and "ΔAUC" in printed
    got = json.loads(report.read_text())["metrics"]
    last = epoch_records(read_metrics(out))[-1]
    for key in ("accuracy", "accuracy_moving", "delta_auc", "epe_px", "static_pred_share", "unique_codes"):
        assert got[f"eval/{key}"] == pytest.approx(last[f"val/{key}"], rel=1e-5), key
    with pytest.raises(SystemExit):
        evaluate_main(["--checkpoint", str(tmp_path / "nope"), "--tracks", str(val_dir)])
    assert "nope" in capsys.readouterr().err
