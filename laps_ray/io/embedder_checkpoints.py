"""Sequence-embedder checkpoints (LSTM or frozen Transformer): safetensors + config YAML + meta JSON.

Layout of a checkpoint directory (same files as a tokenizer checkpoint, :mod:`laps_ray.io.checkpoints`)::

    <dir>/model.safetensors   weights (strict key match on load)
    <dir>/config.yaml         EmbedderConfig or FrozenTransformerConfig
    <dir>/meta.json           {"format", "kind": "lstm" | "frozen_transformer", step, epoch, metrics, ...}
    <dir>/train_state.pt      optional (LSTM training): optimiser state, read with weights_only=True

:func:`resolve_embedder_dir` accepts a ``train_embedder`` run folder (its ``best/``) or a checkpoint.
Written atomically; nothing is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from laps_ray.config import ConfigError, config_sha256, load_config, to_yaml
from laps_ray.io.atomic import atomic_dir
from laps_ray.io.checkpoints import (
    CONFIG_FILE,
    META_FILE,
    TRAIN_STATE_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    check_weights_file,
    save_train_state,
)
from laps_ray.models.embedder import EmbedderConfig, LSTMEmbedder
from laps_ray.models.frozen_transformer import (
    FrozenTransformer,
    FrozenTransformerConfig,
    build_frozen_transformer,
)

FORMAT = "laps_ray.embedder/1"
KINDS = {"lstm": (EmbedderConfig, LSTMEmbedder), "frozen_transformer": (FrozenTransformerConfig, None)}


def save_embedder(
    directory: str | Path,
    model: nn.Module,
    cfg: EmbedderConfig | FrozenTransformerConfig,
    kind: str,
    meta: Mapping[str, Any] | None = None,
    train_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write an embedder checkpoint directory atomically (replacing an existing one).

    Args:
        directory: target directory.
        model: the LSTM embedder or frozen Transformer.
        cfg: its config.
        kind: ``lstm`` or ``frozen_transformer``.
        meta: JSON-serialisable metadata merged into ``meta.json``.
        train_state: optional tensors / plain values for resuming (``train_state.pt``).
    """
    from safetensors.torch import save_file

    if kind not in KINDS:
        raise ValueError(f"unknown embedder kind {kind!r}; expected one of {list(KINDS)}")
    target = Path(directory)
    with atomic_dir(target) as tmp:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT, "kind": kind})
        (tmp / CONFIG_FILE).write_text(to_yaml(cfg))
        info: dict[str, Any] = {
            "format": FORMAT,
            "kind": kind,
            "num_parameters": int(sum(p.numel() for p in model.parameters())),
            "config_sha256": config_sha256(cfg),
            "torch": torch.__version__,
        }
        info.update(dict(meta or {}))
        (tmp / META_FILE).write_text(json.dumps(info, indent=2, allow_nan=False, default=str) + "\n")
        if train_state is not None:
            save_train_state(tmp / TRAIN_STATE_FILE, train_state)
    return target


def resolve_embedder_dir(path: str | Path) -> Path:
    """A checkpoint directory from a ``train_embedder`` run folder (its ``best/``) or a checkpoint.

    Raises:
        CheckpointError: neither (names the path and what is missing).
    """
    p = Path(path)
    if (p / WEIGHTS_FILE).is_file():
        return p
    if (p / "best" / WEIGHTS_FILE).is_file():
        return p / "best"
    raise CheckpointError(
        f"embedder {p}: neither a checkpoint ({WEIGHTS_FILE}) nor a train_embedder run folder with best/"
    )


def embedder_kind(path: str | Path) -> str:
    """``lstm`` or ``frozen_transformer`` from a checkpoint's ``meta.json``."""
    meta_path = Path(path) / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: cannot read ({exc})") from exc
    kind = meta.get("kind")
    if meta.get("format") != FORMAT or kind not in KINDS:
        raise CheckpointError(f"{meta_path}: not a laps_ray embedder checkpoint (format/kind {kind!r})")
    return str(kind)


def load_embedder(path: str | Path) -> tuple[nn.Module, Any, str]:
    """Rebuild an embedder (eval mode, CPU) from a checkpoint directory or a run folder.

    Returns:
        ``(model, config, kind)``.

    Raises:
        CheckpointError: missing or malformed files, or weights that do not match the config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = resolve_embedder_dir(path)
    kind = embedder_kind(directory)
    cfg_cls, _ = KINDS[kind]
    try:
        cfg = load_config(cfg_cls, directory / CONFIG_FILE)
    except ConfigError as exc:
        raise CheckpointError(f"{directory / CONFIG_FILE}: {exc}") from exc
    model: nn.Module = LSTMEmbedder(cfg) if kind == "lstm" else FrozenTransformer(cfg)
    weights = directory / WEIGHTS_FILE
    check_weights_file(weights)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: cannot read safetensors ({exc})") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{weights}: weights do not match {CONFIG_FILE}: {first}") from exc
    return model.eval(), cfg, kind


def frozen_transformer_for_run(
    output: str | Path, cfg: FrozenTransformerConfig
) -> tuple[FrozenTransformer, FrozenTransformerConfig, Path]:
    """The run's frozen Transformer: reuse ``<output>/transformer/`` when it holds the same config,
    else build it from the seed and save it there (so the run's embeddings can be reproduced)."""
    target = Path(output) / "transformer"
    if (target / WEIGHTS_FILE).is_file():
        model, saved, kind = load_embedder(target)
        if kind == "frozen_transformer" and config_sha256(saved) == config_sha256(cfg):
            return model, saved, target
    model = build_frozen_transformer(cfg)
    save_embedder(target, model, cfg, "frozen_transformer", meta={"seed": cfg.seed})
    return model, cfg, target
