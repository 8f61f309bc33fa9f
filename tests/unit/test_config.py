from dataclasses import dataclass, field

import pytest
from helpers import CONFIGS, REPO

from laps_ray.config import ConfigError, check, config_sha256, load_config, to_yaml


@dataclass
class Inner:
    alpha: float = 0.7
    method: str = "ema"

    def __post_init__(self):
        check(0 <= self.alpha <= 1, "inner.alpha", f"must be in [0, 1], got {self.alpha}")


@dataclass
class Outer:
    name: str = "x"
    count: int = 2
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)


def test_defaults_file_and_overrides_merge_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("count: 5\ninner:\n  method: ma\n")
    cfg = load_config(Outer, f, ["inner.alpha=0.25", "tags=[a,b]"])
    assert isinstance(cfg, Outer) and isinstance(cfg.inner, Inner)
    assert (cfg.count, cfg.inner.method, cfg.inner.alpha, cfg.tags) == (5, "ma", 0.25, ["a", "b"])


def test_unknown_key_names_the_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("inner:\n  alhpa: 0.3\n")
    with pytest.raises(ConfigError, match="alhpa"):
        load_config(Outer, f)
    with pytest.raises(ConfigError, match="nope"):
        load_config(Outer, None, ["nope=1"])


def test_bad_type_and_bad_value_name_the_key():
    with pytest.raises(ConfigError, match="count"):
        load_config(Outer, None, ["count=many"])
    with pytest.raises(ConfigError, match="inner.alpha"):
        load_config(Outer, None, ["inner.alpha=3"])


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("count: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(Outer, bad)
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(Outer, None, ["count"])


def test_yaml_round_trip_and_digest(tmp_path):
    cfg = load_config(Outer, None, ["count=7", "tags=[z]"])
    f = tmp_path / "resolved.yaml"
    f.write_text(to_yaml(cfg))
    again = load_config(Outer, f)
    assert again == cfg
    assert config_sha256(again) == config_sha256(cfg)
    assert config_sha256(load_config(Outer, None, ["count=8"])) != config_sha256(cfg)


def test_every_shipped_config_file_parses():
    from laps_ray.jobs.preprocess import PreprocessJobConfig

    load_config(PreprocessJobConfig, CONFIGS / "preprocess.yaml")


@dataclass
class Deep:
    outer: Outer = field(default_factory=Outer)


def test_nested_validation_names_the_full_path():
    with pytest.raises(ConfigError, match=r"'outer\.inner\.alpha'") as exc:
        load_config(Deep, None, ["outer.inner.alpha=2"])
    assert exc.value.key == "outer.inner.alpha"
    from laps_ray.jobs.preprocess import PreprocessJobConfig

    with pytest.raises(ConfigError, match=r"'tracker\.name'"):
        load_config(PreprocessJobConfig, None, ["tracker.name=sift"])
    with pytest.raises(ConfigError, match=r"'decode\.target_fps'"):
        load_config(PreprocessJobConfig, None, ["decode.target_fps=0"])


def test_cluster_yaml_validates_offline():
    """cluster.yaml passes Ray's own schema check (no cloud access; private API, Ray pinned)."""
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(cfg))
    assert {"head", "cpu_worker", "gpu_worker"} <= set(cfg["available_node_types"])
    assert all(
        "RAY_AUTH_MODE=token" in " ".join(cfg[k])
        for k in ("head_start_ray_commands", "worker_start_ray_commands")
    )
    assert any("ray[default,train,tune]==2.60.0" in c for c in cfg["setup_commands"])


def test_true_and_false_reach_auto_true_false_choices_as_words():
    """YAML turns ``use_gpu=false`` into a boolean; the choice fields take the word back."""
    from laps_ray.training.config import TrainTokenizerConfig

    for value in ("true", "false", "auto"):
        cfg = load_config(TrainTokenizerConfig, CONFIGS / "train_tokenizer.yaml", [f"use_gpu={value}"])
        assert cfg.use_gpu == value
    with pytest.raises(ConfigError, match="'use_gpu'"):
        load_config(TrainTokenizerConfig, None, ["use_gpu=maybe"])
