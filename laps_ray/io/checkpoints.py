"""Tokenizer checkpoints: safetensors weights + YAML config + JSON metadata, written atomically.

Layout of a checkpoint directory::

    <dir>/model.safetensors   weights (strict key match on load)
    <dir>/config.yaml         TokenizerConfig (laps_ray.config.to_yaml), enough to rebuild the model
    <dir>/meta.json           step, epoch, metrics, versions, parameter count, digests
    <dir>/train_state.pt      optional: optimiser/scheduler/scaler state for resuming

Nothing is ever unpickled with ``weights_only=False``: ``train_state.pt`` holds only tensors and plain
Python values and is read with ``torch.load(weights_only=True)``; original AMPLIFY/LAPS ``.pt`` files are
read the same way (:func:`load_original_checkpoint`) and refused with instructions if they contain
pickled objects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch

from laps_ray.config import ConfigError, config_sha256, load_config, to_yaml
from laps_ray.io.atomic import atomic_dir, atomic_path
from laps_ray.models.tokenizer import MotionTokenizer
from laps_ray.models.tokenizer_config import TokenizerConfig

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
TRAIN_STATE_FILE = "train_state.pt"
FORMAT = "laps_ray.tokenizer/1"


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed or unsafe to load; the message names the file and why."""


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__}
    for dist in ("laps_ray", "vector-quantize-pytorch", "safetensors"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _checkpoint_dir(path: str | Path) -> Path:
    p = Path(path)
    return p.parent if p.name == WEIGHTS_FILE else p


def _check_plain(obj: Any, where: str) -> None:
    """Raise unless ``obj`` holds only tensors and plain Python values (what weights_only can load)."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"train state key {where}[{k!r}]: keys must be str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise CheckpointError(
        f"train state {where}: {type(obj).__name__} is not a tensor or plain Python value; "
        "store state_dict()s and numbers only"
    )


def save_tokenizer(
    directory: str | Path,
    model: MotionTokenizer,
    cfg: TokenizerConfig,
    meta: Mapping[str, Any] | None = None,
    train_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (temp sibling directory, then rename).

    An existing directory at ``directory`` is replaced: it is renamed aside, the new one renamed in,
    then the old one deleted, so a reader sees either the old or the new complete checkpoint (or, for
    an instant, none), never a partial one.

    Args:
        directory: target checkpoint directory.
        model: the tokenizer (its state dict is saved; buffers that are not persistent are not).
        cfg: its config, written as ``config.yaml``.
        meta: extra JSON-serialisable metadata (e.g. ``step``, ``epoch``, ``metrics``) merged into
            ``meta.json`` over the defaults (format, versions, parameter count, config digest).
        train_state: optional dict of tensors / plain values (optimiser, scheduler, scaler state
            dicts, RNG seeds) saved as ``train_state.pt`` for resuming.

    Returns:
        The checkpoint directory.
    """
    from safetensors.torch import save_file

    target = Path(directory)
    with atomic_dir(target) as tmp:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        (tmp / CONFIG_FILE).write_text(to_yaml(cfg))
        info: dict[str, Any] = {
            "format": FORMAT,
            "step": None,
            "epoch": None,
            "metrics": {},
            "num_parameters": model.num_parameters(),
            "true_codebook_size": model.true_codebook_size,
            "config_sha256": config_sha256(cfg),
            "versions": _versions(),
        }
        info.update(dict(meta or {}))
        (tmp / META_FILE).write_text(json.dumps(info, indent=2, allow_nan=False, default=str) + "\n")
        if train_state is not None:
            _check_plain(dict(train_state), "train_state")
            torch.save(dict(train_state), tmp / TRAIN_STATE_FILE)
    log.info("saved tokenizer checkpoint %s", target)
    return target


def load_tokenizer_config(path: str | Path) -> TokenizerConfig:
    """The :class:`TokenizerConfig` of a checkpoint (directory or its ``model.safetensors``)."""
    cfg_path = _checkpoint_dir(path) / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{cfg_path}: missing; a tokenizer checkpoint needs {CONFIG_FILE} next to the weights"
        )
    try:
        return load_config(TokenizerConfig, cfg_path)
    except ConfigError as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from exc


def check_weights_file(path: str | Path) -> None:
    """Structural check of a ``model.safetensors`` without reading its tensors.

    Safetensors is an 8-byte little-endian header length, a JSON header with each tensor's dtype,
    shape and byte range, then the data. A file cut short (an interrupted copy) or not in that format
    fails here with a message that says so, instead of a deserialiser error.

    Raises:
        CheckpointError: missing, unreadable, not safetensors, or truncated (names the byte counts).
    """
    weights = Path(path)
    if weights.is_dir():
        weights = weights / WEIGHTS_FILE
    try:
        size = weights.stat().st_size
        with open(weights, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n <= 1 or 8 + n > size:
                raise CheckpointError(
                    f"{weights}: not a safetensors file or truncated ({size} bytes; header length "
                    f"{n if n >= 0 else 'unreadable'})"
                )
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: missing; not a laps_ray tokenizer checkpoint directory") from None
    except OSError as exc:
        raise CheckpointError(f"{weights}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{weights}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{weights}: not a safetensors file (its header is not a JSON object)")
    ends = [
        int(v["data_offsets"][1])
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and len(v.get("data_offsets", ())) == 2
    ]
    need = 8 + n + max(ends, default=0)
    if size < need:
        raise CheckpointError(
            f"{weights}: truncated: {size} bytes, its header describes {need} (an interrupted copy?)"
        )


def verify_tokenizer(path: str | Path) -> TokenizerConfig:
    """Load a checkpoint on the CPU once and drop it: every check :func:`load_tokenizer` makes (files,
    header, config against weights), before a job deletes anything or starts Ray.

    Raises:
        CheckpointError: the one-line reason, naming the file.
    """
    model, cfg = load_tokenizer(path, "cpu")
    del model
    return cfg


def load_tokenizer(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[MotionTokenizer, TokenizerConfig]:
    """Rebuild a tokenizer from a checkpoint directory (or its ``model.safetensors``).

    Keys must match the model exactly; the model is returned in eval mode on ``device``.

    Raises:
        CheckpointError: missing files, invalid config, or missing/unexpected/mis-shaped weights.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = _checkpoint_dir(path)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing; not a laps_ray tokenizer checkpoint directory")
    cfg = load_tokenizer_config(directory)
    check_weights_file(weights)
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: cannot read safetensors ({exc})") from exc
    model = MotionTokenizer(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: weights do not match config '{cfg.name}': missing {missing}, unexpected {unexpected}"
        )
    bad = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if state[k].shape != v.shape
    ]
    if bad:
        raise CheckpointError(f"{weights}: tensor shapes do not match the config: {bad}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), cfg


def checkpoint_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a checkpoint's weights file (directory or ``model.safetensors``)."""
    weights = _checkpoint_dir(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing; cannot compute the checkpoint digest")
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta.json`` of a checkpoint directory."""
    meta_path = _checkpoint_dir(path) / META_FILE
    try:
        return json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: cannot read ({exc})") from exc


def save_train_state(path: str | Path, state: Mapping[str, Any]) -> None:
    """Atomically ``torch.save`` a dict of tensors / plain values (no custom objects are allowed)."""
    _check_plain(dict(state), "train_state")
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def load_train_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a train state with ``weights_only=True`` (path: the file or its checkpoint directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / TRAIN_STATE_FILE
    if not p.is_file():
        raise CheckpointError(f"{p}: missing train state")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{p}: refusing to unpickle non-tensor objects ({exc})") from exc


def load_original_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read an AMPLIFY/LAPS ``torch.save`` checkpoint safely (``weights_only=True``).

    Returns:
        The checkpoint dict; it has at least ``config`` (a plain dict) and ``model`` (a state dict).

    Raises:
        CheckpointError: unreadable, not a dict with ``config`` and ``model``, or it contains pickled
            Python objects (refused; the message explains how to convert it).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p}: refusing to load: the file contains pickled Python objects other than tensors and plain "
            f"containers ({first}). Unpickling them could run arbitrary code, so laps_ray only loads with "
            "torch.load(weights_only=True). If you trust the file, convert it once in a trusted environment "
            "with the original code installed: ck = torch.load(IN, weights_only=False); "
            "torch.save({'config': OmegaConf.to_container(OmegaConf.create(ck['config']), resolve=True), "
            "'model': dict(ck['model'])}, 'converted.pt'), then import converted.pt."
        ) from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{p}: cannot read as a torch checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{p}: expected a dict with 'config' and 'model' (AMPLIFY format), got {keys}")
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["model"], dict):
        raise CheckpointError(f"{p}: 'config' must be a plain dict and 'model' a state dict")
    return ckpt
