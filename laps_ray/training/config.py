"""The tokenizer training config (``configs/train_tokenizer.yaml``) and how it is loaded.

* :class:`TrainSettings`: what a training worker needs (model, loss, optimiser, epochs, ...).
* :class:`TrainTokenizerConfig`: a whole training run (:func:`laps_ray.training.run.train`): the
  settings plus paths, resume, backend and Ray Train resources. The ``train_tokenizer`` job and each
  ``sweep_codebook`` trial use it.
* :func:`load_train_config`: defaults → named model (``model=NAME``) → YAML file → overrides;
  :func:`resolve_model_name` finds that name for any config that nests a tokenizer config.

No Ray.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from laps_ray.config import ConfigError, check, check_choice, load_config, yaml_word
from laps_ray.models.losses import TokenizerLossConfig
from laps_ray.models.tokenizer_config import TokenizerConfig, model_for_name, named_config, named_config_names
from laps_ray.training.steps import OptimConfig

AMP_DTYPES = ("bfloat16", "float16")
BACKENDS = ("ray", "local")
GPU_CHOICES = ("auto", "true", "false")
SAMPLINGS = ("uniform", "motion")


@dataclasses.dataclass
class TrainSettings:
    """What a training worker needs (no paths, no cluster settings).

    Attributes:
        model: tokenizer architecture (a named config, see ``model=NAME``).
        loss: loss terms.
        optim: AdamW + warm-up/cosine schedule + gradient clipping.
        epochs: epochs to train (a resumed run continues up to this number).
        batch_size: windows per optimiser step *per worker*.
        val_fraction: share of *videos* held out for validation (split by video, seeded).
        seed: split, shuffling and initialisation seed.
        views: camera views to read from the track files (empty: the first view).
        log_every_steps: a step-level report every this many optimiser steps (0: epoch reports only).
        train_metrics_every: compute training accuracy / endpoint error on every k-th step (an argmax
            over all logits costs ~10 % of a CPU step); loss and codes are counted on every step.
        eval_batch_size: windows per validation batch.
        amp: mixed precision on GPU (``amp_dtype``); CPU always trains in float32.
        amp_dtype: ``bfloat16`` (no loss scaling) or ``float16`` (with a GradScaler).
        threads: torch threads per worker (0: one per reserved CPU under Ray, torch's default locally).
        init_input_std: fresh runs: scale the encoder's input layer so its output has this std over
            the first ``init_windows`` training windows (0: keep the default init); see
            :func:`~laps_ray.training.steps.scale_input_projection`.
        init_windows: windows used for that initialisation.
        collapse_threshold, collapse_epochs: warn when unique codes < threshold × true codebook size
            for this many consecutive epochs (on validation codes, or training codes without a split).
        sampling: ``uniform`` (every window once per epoch) or ``motion`` (an epoch is as many draws,
            with replacement, in proportion to ``sampling_floor`` + the window's share of moving steps:
            the static windows that dominate real footage are seen less often).
        sampling_floor: weight of a window without motion under ``sampling=motion``.
        init_from: fine-tuning: a tokenizer checkpoint directory whose weights start a *new* run
            (``shipped``: the default checkpoint of the package). The model config is the
            checkpoint's; ``model.*`` settings that change the architecture must match it.
            ``--resume`` wins over it (a resumed run continues from its own checkpoint).
    """

    model: TokenizerConfig = dataclasses.field(default_factory=lambda: named_config("small"))
    loss: TokenizerLossConfig = dataclasses.field(default_factory=TokenizerLossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    epochs: int = 20
    batch_size: int = 32
    val_fraction: float = 0.2
    seed: int = 0
    views: list[str] = dataclasses.field(default_factory=list)
    log_every_steps: int = 10
    train_metrics_every: int = 4
    eval_batch_size: int = 64
    amp: bool = True
    amp_dtype: str = "bfloat16"
    threads: int = 0
    init_input_std: float = 1.0
    init_windows: int = 256
    collapse_threshold: float = 0.05
    collapse_epochs: int = 2
    sampling: str = "uniform"
    sampling_floor: float = 0.1
    init_from: str = ""

    def __post_init__(self) -> None:
        check_choice(self.sampling, SAMPLINGS, "sampling")
        check(self.sampling_floor > 0, "sampling_floor", f"must be > 0, got {self.sampling_floor}")
        check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(0 <= self.val_fraction < 1, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        check(self.log_every_steps >= 0, "log_every_steps", f"must be >= 0, got {self.log_every_steps}")
        check(
            self.train_metrics_every >= 1,
            "train_metrics_every",
            f"must be >= 1, got {self.train_metrics_every}",
        )
        check(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        check_choice(self.amp_dtype, AMP_DTYPES, "amp_dtype")
        check(self.threads >= 0, "threads", f"must be >= 0, got {self.threads}")
        check(
            self.init_input_std >= 0, "init_input_std", f"must be >= 0 (0 = off), got {self.init_input_std}"
        )
        check(self.init_windows >= 1, "init_windows", f"must be >= 1, got {self.init_windows}")
        check(
            0 < self.collapse_threshold < 1,
            "collapse_threshold",
            f"must be in (0, 1), got {self.collapse_threshold}",
        )
        check(self.collapse_epochs >= 1, "collapse_epochs", f"must be >= 1, got {self.collapse_epochs}")


@dataclasses.dataclass
class TrainTokenizerConfig(TrainSettings):
    """A tokenizer training run (``configs/train_tokenizer.yaml``; the ``train_tokenizer`` job).

    Attributes (besides :class:`TrainSettings`):
        tracks: folder of ``.h5`` track files (searched recursively).
        output: output folder.
        resume: continue from ``<output>/latest`` (``--resume``).
        backend: ``ray`` (TorchTrainer) or ``local`` (same loop in this process, no Ray).
        num_workers: Ray Train workers.
        cpus_per_worker: CPUs reserved per worker (also its torch thread count).
        use_gpu: ``auto`` (if the cluster has GPUs), ``true`` or ``false``.
        gpus_per_worker: GPUs per worker when GPUs are used.
        storage_path: Ray Train storage (checkpoints land in ``<storage_path>/checkpoints/``); empty =
            ``output``. Must be shared storage on a multi-node cluster.
        keep_checkpoints: keep the newest N epoch checkpoints (0 = all); ``best/`` is kept apart.
    """

    tracks: str = ""
    output: str = ""
    resume: bool = False
    backend: str = "ray"
    num_workers: int = 2
    cpus_per_worker: float = 1.0
    use_gpu: str = "auto"
    gpus_per_worker: float = 1.0
    storage_path: str = ""
    keep_checkpoints: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_run_resources(self)


def check_run_resources(cfg: Any) -> None:
    """The checks of a training run's backend and Ray Train resources (tokenizer and embedder runs):
    ``backend``, ``use_gpu``, ``num_workers``, ``cpus_per_worker``, ``gpus_per_worker``,
    ``keep_checkpoints``.

    Raises:
        laps_ray.config.ConfigError: naming the key and the reason.
    """
    check_choice(cfg.backend, BACKENDS, "backend")
    cfg.use_gpu = yaml_word(cfg.use_gpu)
    check_choice(cfg.use_gpu, GPU_CHOICES, "use_gpu")
    check(cfg.num_workers >= 1, "num_workers", f"must be >= 1, got {cfg.num_workers}")
    check(cfg.cpus_per_worker > 0, "cpus_per_worker", f"must be > 0, got {cfg.cpus_per_worker}")
    check(cfg.gpus_per_worker > 0, "gpus_per_worker", f"must be > 0, got {cfg.gpus_per_worker}")
    check(cfg.keep_checkpoints >= 0, "keep_checkpoints", f"must be >= 0, got {cfg.keep_checkpoints}")


def resolve_model_name(
    config_path: str | Path | None, overrides: Sequence[str], key: str = "model"
) -> tuple[str | None, list[str]]:
    """Find the named model size chosen by ``key=NAME`` / ``key.name=NAME`` or the YAML file.

    Returns ``(name or None, overrides)`` with ``key=NAME`` rewritten to ``key.name=NAME`` so that the
    remaining overrides can be merged over a base built from
    :func:`~laps_ray.models.tokenizer_config.model_for_name`.

    Raises:
        ConfigError: ``key=NAME`` with an unknown name, or ``key:`` given as a string in the YAML file.
    """
    name: str | None = None
    out: list[str] = []
    for item in overrides:
        k, sep, v = item.partition("=")
        value = v.strip().strip("'\"")
        if sep and k.strip() == key:
            if value not in named_config_names():
                raise ConfigError(
                    f"config key '{key}': unknown model {value!r}; valid names are {named_config_names()}",
                    key=key,
                )
            name = value
            out.append(f"{key}.name={value}")
            continue
        if sep and k.strip() == f"{key}.name":
            name = value
        out.append(item)
    if name is None and config_path is not None:
        try:
            data = yaml.safe_load(Path(config_path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            data = {}  # load_config reports unreadable files with the reason
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, str):
            raise ConfigError(
                f"config file {str(config_path)!r}: key '{key}' must be a mapping, "
                f"e.g. '{key}: {{name: {node}}}'"
                f" (or pass {key}={node} on the command line)",
                key=key,
            )
        if isinstance(node, dict) and node.get("name") is not None:
            name = str(node["name"])
    return name, out


def load_train_config(config_path: str | Path | None, overrides: Sequence[str]) -> TrainTokenizerConfig:
    """Defaults → named model (``model=NAME``) → YAML file → ``key=value`` overrides (flags included).

    Raises:
        ConfigError: unreadable file, unknown key or model name, invalid value (names the key).
    """
    name, rest = resolve_model_name(config_path, list(overrides))
    base = TrainTokenizerConfig(model=model_for_name(name, TrainTokenizerConfig().model))
    return load_config(TrainTokenizerConfig, config_path, rest, base=base)
