"""Tokenizer training without Ray: data, steps, the plain loop, resume, the shipped checkpoint. Ray Train:
tests/ray/test_training_ray.py; ``ray job submit``: tests/e2e/test_training_submit.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import CONFIGS, job_help, train_cfg

from laps_ray.config import ConfigError
from laps_ray.core.windows import normalized_velocities
from laps_ray.io.checkpoints import load_tokenizer, read_meta, save_tokenizer
from laps_ray.io.track_store import list_track_files, load_windows
from laps_ray.jobs.train_tokenizer import main, run, summary_line
from laps_ray.models.losses import displacement_classes
from laps_ray.models.recon_metrics import classes_to_displacement
from laps_ray.training.config import load_train_config
from laps_ray.training.data import shard_batches, shard_indices, steps_per_epoch, window_arrays
from laps_ray.training.fit import TrainingError
from laps_ray.training.report import epoch_records, read_metrics
from laps_ray.training.steps import lr_factor, scale_input_projection

# ----------------------------------------------------------------------------------- pure helpers


def test_class_decoding_inverts_targets():
    rng = np.random.default_rng(1)
    # Integer pixel tracks with steps inside the ±7 px class window.
    steps = rng.integers(-7, 8, size=(3, 1, 15, 5, 2)).astype(np.float32)
    start = rng.integers(20, 40, size=(3, 1, 1, 5, 2)).astype(np.float32)
    tracks = np.concatenate([start, start + np.cumsum(steps, axis=2)], axis=2)  # (B, V, T, N, 2)
    classes = displacement_classes(torch.from_numpy(tracks), 15)
    np.testing.assert_array_equal(classes_to_displacement(classes, 15).numpy(), steps)


def test_window_arrays_normalise_each_window_with_its_own_frame_size(synthetic_tracks):
    ws = load_windows(list_track_files(synthetic_tracks)[:2])  # one 64x48 and one 48x64 video
    arr = window_arrays(ws)
    assert {tuple(s) for s in ws.sizes} == {(48, 64), (64, 48)}
    for i in (0, len(ws) - 1):
        h, w = ws.sizes[i]
        np.testing.assert_allclose(arr.vel[i], normalized_velocities(ws.tracks[i], h, w), atol=1e-6)
        # velocity x px_per_unit is the pixel displacement again
        disp = arr.vel[i] * arr.px_per_unit[i]
        np.testing.assert_allclose(disp, np.diff(ws.tracks[i], axis=-3), atol=1e-4)
    assert arr.targets.shape == arr.vel.shape[:-1] and arr.targets.min() >= 0


def test_foreground_windows_see_and_reconstruct_the_actor_not_the_camera():
    """motion_input=foreground: camera shake moves every pixel track, but the input and the targets
    are the actor's motion only (a still background point is "no motion")."""
    from laps_ray.io.track_store import WindowSet
    from laps_ray.models.losses import centre_class

    g, t, h, w = 20, 16, 120, 160
    xs, ys = np.meshgrid(np.linspace(8, w - 8, g), np.linspace(8, h - 8, g))
    still = np.stack([xs.ravel(), ys.ravel()], axis=-1)[None].repeat(t, axis=0)  # (T, N, 2) pixels
    actor = np.array([r * g + c for r in range(8, 12) for c in range(8, 12)])
    acting = still.copy()
    acting[:, actor] += 6.0 * np.stack([np.cos(np.arange(t) / 2), np.sin(np.arange(t) / 2)], -1)[:, None]
    panned = (
        acting + 3.0 * (np.arange(t) % 2)[:, None, None]
    )  # camera shake: 3 px on both axes, back and forth
    tracks = np.stack([acting, panned])[:, None].astype(np.float32)  # (M=2, V=1, T, N, 2)
    ws = WindowSet(tracks, np.ones(tracks.shape[:-1], bool), np.array([[h, w]] * 2, np.int32),
                   np.zeros(2, np.int32), [])  # fmt: skip
    vel_arr, fg_arr = window_arrays(ws, 15, "velocity"), window_arrays(ws, 15, "foreground")
    centre = centre_class(15)
    background = np.setdiff1d(np.arange(g * g), actor)
    assert (vel_arr.targets[1, 0][:, background] != centre).all()  # the shake is all the raw tracks show
    assert (fg_arr.targets[:, 0][:, :, background] == centre).all()
    assert not fg_arr.vel[:, 0][:, :, background].any()
    inner = np.array([r * g + c for r in range(9, 11) for c in range(9, 11)])
    assert (fg_arr.targets[:, 0][:, :, inner] != centre).mean() > 0.9  # the actor still moves
    np.testing.assert_allclose(fg_arr.vel[1], fg_arr.vel[0], atol=1e-3)  # shake removed


def test_shards_are_disjoint_equal_length_and_cover_everything():
    n, bs, world = 23, 4, 2
    shards = [
        np.concatenate(list(shard_batches(n, bs, epoch=3, seed=7, rank=r, world_size=world))) for r in (0, 1)
    ]
    assert all(len(s) == 12 for s in shards)  # ceil(23/2), padded with one repeat
    assert [len(list(shard_batches(n, bs, 3, 7, r, world))) for r in (0, 1)] == [
        steps_per_epoch(n, bs, world)
    ] * 2
    assert set(shards[0]) | set(shards[1]) == set(range(n))
    assert len(set(shards[0]) & set(shards[1])) <= world - 1
    assert not np.array_equal(
        np.concatenate(list(shard_batches(n, bs, 4, 7, 0, world))), shards[0]
    )  # reshuffled per epoch
    val = [shard_indices(5, r, 2) for r in (0, 1)]
    assert sorted(np.concatenate(val).tolist()) == [0, 1, 2, 3, 4]


def test_learning_rate_warms_up_then_follows_a_cosine():
    f = [lr_factor(s, 100, 10, 0.01, 0.1) for s in range(101)]
    assert f[0] == pytest.approx(0.01) and f[10] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:10], f[1:11]))
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[55] == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-9) and f[100] == pytest.approx(0.1)


def test_input_layer_init_brings_small_velocities_to_unit_scale(synthetic_tracks):
    from laps_ray.models.tokenizer import MotionTokenizer
    from laps_ray.models.tokenizer_config import named_config

    torch.manual_seed(0)
    model = MotionTokenizer(named_config("tiny"))
    vel = torch.from_numpy(window_arrays(load_windows(list_track_files(synthetic_tracks))).vel[:64])
    flat = vel.permute(0, 2, 1, 3, 4).reshape(-1, 32)
    before = float((flat @ model.in_proj.weight.detach().t()).std())
    factor = scale_input_projection(model, vel, 1.0)
    assert before < 0.1 and factor == pytest.approx(1.0 / before)
    assert float((flat @ model.in_proj.weight.detach().t()).std()) == pytest.approx(1.0, rel=1e-4)
    assert scale_input_projection(model, torch.zeros_like(vel), 1.0) == 1.0  # no motion: unchanged


def test_config_named_model_then_overrides_and_clear_errors(tmp_path):
    cfg = load_train_config(None, ["model=tiny", "model.hidden_dim=32", "epochs=3"])
    assert (cfg.model.name, cfg.model.num_points, cfg.model.hidden_dim, cfg.epochs) == ("tiny", 16, 32, 3)
    assert load_train_config(None, []).model.name == "small"
    shipped = load_train_config(CONFIGS / "train_tokenizer.yaml", [])
    assert shipped.model.name == "small" and shipped.num_workers == 2 and shipped.optim.grad_clip == 1.0
    with pytest.raises(ConfigError, match="unknown model 'huge'"):
        load_train_config(None, ["model=huge"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_train_config(bad, [])
    with pytest.raises(ConfigError, match="num_workers"):
        load_train_config(None, ["num_workers=0"])


def test_cli_refuses_to_mix_a_new_run_into_an_old_one_in_one_line(synthetic_tracks, tmp_path, capsys):
    out = tmp_path / "old"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["--tracks", str(synthetic_tracks), "--output", str(out), "--local", "model=tiny"])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {out} already holds a training run (metrics.jsonl, checkpoints/); pass --resume "
                   "to continue it, or choose a new --output"]  # fmt: skip


def test_train_v2_local_mode_still_drops_reports_so_the_in_process_runtime_stays(tmp_path):
    """The measured reason at the top of training/loops.py: Train V2's ``num_workers=0`` local mode
    runs the loop in-process but calls no callback and stores nothing. If a Ray upgrade changes
    that, this fails and LocalIO can go."""
    import ray.train
    from ray.train.torch import TorchTrainer

    seen = []

    class Seen(ray.train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            seen.append(metrics)

    def loop(config):
        ckpt = tmp_path / "epoch_0001"
        ckpt.mkdir()
        ray.train.report({"epoch": 1}, checkpoint=ray.train.Checkpoint.from_directory(str(ckpt)))
        return ray.train.get_context().get_world_size()

    storage = tmp_path / "storage"
    result = TorchTrainer(
        loop,
        scaling_config=ray.train.ScalingConfig(num_workers=0),
        run_config=ray.train.RunConfig(name="checkpoints", storage_path=str(storage), callbacks=[Seen()]),
    ).fit()
    assert result.return_value == 1 and result.metrics == {"epoch": 1}  # ran, in this process
    assert seen == [] and not any(storage.rglob("*"))


# ------------------------------------------------------------------------------ plain loop + resume


def test_plain_loop_learns_splits_by_video_checkpoints_and_resumes(synthetic_tracks, tmp_path):
    out = tmp_path / "run"
    res = run(train_cfg(synthetic_tracks, out, "epochs=5", "batch_size=8", "backend=local"), command="pytest")
    reports = read_metrics(out)
    epochs = epoch_records(reports)
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4, 5]
    steps = [r for r in reports if r["report"] == "step"]
    # The reconstruction loss (the total also holds the negative usage term) falls clearly.
    assert epochs[-1]["train/recon"] < 0.5 * steps[0]["train/recon"]
    assert epochs[-1]["val/recon"] < 0.7 * epochs[0]["val/recon"]
    # Metric names, codebook health against the TRUE code count (2048 -> 1920).
    for key in (
        "train/loss", "val/loss", "val/accuracy", "val/accuracy_moving", "val/epe_px", "val/perplexity",
        "val/entropy_norm", "val/unique_codes", "val/dead_code_ratio", "train/unique_codes", "lr", "step",
        "collapse_warning",
    ):  # fmt: skip
        assert key in epochs[-1], key
    assert epochs[-1]["val/true_codebook_size"] == 1920
    assert epochs[-1]["val/dead_code_ratio"] == pytest.approx(1 - epochs[-1]["val/unique_codes"] / 1920)
    assert epochs[-1]["val/epe_px"] >= 0
    # Split by video, and actually applied: val windows are exactly those of the val videos.
    run_json = json.loads((out / "run.json").read_text())
    train_v, val_v = set(run_json["split"]["train"]), set(run_json["split"]["val"])
    assert train_v and val_v and not train_v & val_v
    assert epochs[0]["val/windows"] == 16 * len(val_v) and epochs[0]["train/windows"] == 16 * len(train_v)
    # Checkpoint layout; best/ is the lowest val loss; latest points at the newest epoch.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"epoch_000{i}" for i in range(1, 6)]
    assert (out / "latest").read_text().strip() == "checkpoints/epoch_0005"
    best_epoch = min(epochs, key=lambda r: r["val/loss"])["epoch"]
    assert read_meta(out / "best")["epoch"] == best_epoch and not (out / "best" / "train_state.pt").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["epoch"] == best_epoch and summary["codebook"]["true_codebook_size"] == 1920
    assert (out / "curves.png").stat().st_size > 10_000
    assert "best epoch" in summary_line(res) and res.summary["steps"] == epochs[-1]["step"]

    # A new run into the same folder is refused; --resume continues the step count and the epochs.
    with pytest.raises(TrainingError, match="--resume"):
        run(train_cfg(synthetic_tracks, out, "epochs=7", "batch_size=8", "backend=local"))
    run(train_cfg(synthetic_tracks, out, "epochs=7", "batch_size=8", "backend=local", "resume=true"))
    after = epoch_records(read_metrics(out))
    assert [r["epoch"] for r in after] == [1, 2, 3, 4, 5, 6, 7]
    per_epoch = epochs[1]["step"] - epochs[0]["step"]
    assert [r["step"] for r in after] == [per_epoch * e for e in range(1, 8)]
    step_reports = [r["step"] for r in read_metrics(out) if r["report"] == "step"]
    assert step_reports == sorted(set(step_reports))  # no duplicates, strictly increasing
    state = torch.load(out / "checkpoints" / "epoch_0007" / "train_state.pt", weights_only=True)
    assert state["step"] == 7 * per_epoch and state["optimizer"]["state"]  # optimiser state restored + saved


def test_save_load_gives_identical_outputs(synthetic_tracks, tmp_path):
    out = tmp_path / "one"
    run(train_cfg(synthetic_tracks, out, "epochs=1", "backend=local", "val_fraction=0"))
    model, cfg = load_tokenizer(out / "checkpoints" / "epoch_0001")
    vel = torch.from_numpy(window_arrays(load_windows(list_track_files(synthetic_tracks)[:1])).vel[:8])
    again, _ = load_tokenizer(save_tokenizer(tmp_path / "copy", model, cfg))
    a, b = model(vel), again(vel)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.rel_logits, b.rel_logits)
    best, _ = load_tokenizer(out / "best")  # no val split: best = lowest training loss
    assert torch.equal(best(vel).rel_logits, a.rel_logits)


# ----------------------------------------------------------------------------- shipped checkpoint


def test_shipped_default_checkpoint_loads_is_small_and_records_its_command():
    from laps_ray.assets import default_tokenizer_path

    path = default_tokenizer_path()
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size <= 5 * 2**20
    model, cfg = load_tokenizer(path)
    assert cfg.name == "small" and cfg.num_points == 400 and cfg.T == 16
    meta = read_meta(path)
    assert "laps_ray.jobs.train_tokenizer" in meta["command"]
    assert "make_default_checkpoint.sh" in meta["reproduce"]
    # Codes are used (not collapsed) on a moving input.
    vel = torch.zeros(4, 1, 15, 400, 2)
    vel[1, :, :, :200, 0] = 0.02
    vel[2, :, :, 200:, 1] = -0.03
    vel[3] = torch.randn(1, 15, 400, 2) * 0.01
    assert len(torch.unique(model(vel).ids)) > 1


def test_default_tokenizer_path_names_a_missing_file(monkeypatch, tmp_path):
    import laps_ray.assets as assets

    monkeypatch.setattr(assets, "ASSETS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "tokenizer_small")):
        assets.default_tokenizer_path()


def test_module_help_is_fast():
    out = job_help("train_tokenizer")
    assert "--resume" in out and "--tracks" in out
