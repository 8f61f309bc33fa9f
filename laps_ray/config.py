"""Typed configuration: dataclasses filled from YAML files and ``key.sub=value`` overrides.

Every job and model has a dataclass config. :func:`load_config` merges, in order, the dataclass
defaults, an optional YAML file and CLI overrides, using OmegaConf's structured configs so that an
unknown key or a value of the wrong type is an error that names the key. Range checks live in each
dataclass's ``__post_init__`` and raise :class:`ConfigError` naming the field.

This module imports no torch and no Ray: every layer may use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

C = TypeVar("C")
D = TypeVar("D")


class ConfigError(ValueError):
    """A config file, key or value is invalid. The message names the file and/or key.

    ``key`` is the dotted key when known; :func:`load_config` qualifies keys raised by nested
    dataclasses with their path (``name`` inside ``tracker`` becomes ``tracker.name``).
    """

    def __init__(self, message: str, key: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.key = key
        self.reason = reason


def check(condition: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` for ``key`` (relative to the dataclass) unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"config key '{key}': {message}", key=key, reason=message)


def check_choice(value: str, choices: Sequence[str], key: str) -> None:
    """Raise unless ``value`` is one of ``choices``; the message lists the valid ones."""
    check(value in choices, key, f"got {value!r}, expected one of {list(choices)}")


def yaml_word(value: object) -> str:
    """A str field's value as the user wrote it. YAML reads ``true`` / ``false`` (in a file or a
    ``key=value`` override) as booleans, which reach a str field as ``"True"`` / ``"False"``; a choice
    such as ``auto | true | false`` wants the words back."""
    return {"True": "true", "False": "false"}.get(str(value), str(value))


def _parse_override(item: str) -> str:
    if "=" not in item or item.startswith("="):
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    return item


def load_config(
    cls: type[C],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: C | None = None,
) -> C:
    """Build a ``cls`` instance from defaults, a YAML file and ``key=value`` overrides.

    Args:
        cls: a dataclass type (may nest other dataclasses).
        path: optional YAML file whose keys must all exist in ``cls``.
        overrides: ``["a.b=1", "c=[1,2]"]`` style strings, applied last.
        base: start from this instance instead of the class defaults.

    Returns:
        A validated instance (its ``__post_init__`` has run).

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or invalid value; the message names
            the file and the key.
    """
    try:
        schema = OmegaConf.structured(base if base is not None else cls)
    except OmegaConfBaseException as exc:  # a bug in our own dataclass, not user input
        raise ConfigError(f"cannot build config schema for {cls.__name__}: {exc}") from exc
    layers = [schema]
    if path is not None:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"config file {str(p)!r}: cannot read ({exc.strerror or exc})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(p)!r}: invalid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(
                f"config file {str(p)!r}: top level must be a mapping, got {type(data).__name__}"
            )
        layers.append(_from_dict(data, source=str(p)))
    if overrides:
        try:
            layers.append(OmegaConf.from_dotlist([_parse_override(o) for o in overrides]))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"overrides {list(overrides)}: {exc}") from exc
    where = f" (file {str(path)!r})" if path is not None else ""
    try:
        merged = OmegaConf.merge(*layers)
        _validate_nested(merged, "")
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{_describe(exc)}{where}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{exc}{where}", key=exc.key, reason=exc.reason) from exc
    return obj  # type: ignore[return-value]


def _validate_nested(node: Any, prefix: str) -> None:
    """Run each nested dataclass's ``__post_init__`` (deepest first) to name failing keys by full path."""
    from omegaconf import DictConfig

    if not isinstance(node, DictConfig):
        return
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(child)):
            _validate_nested(child, f"{prefix}{key}.")
    if not prefix:
        return  # the top level is validated by the caller's to_object
    try:
        OmegaConf.to_object(node)
    except ConfigError as exc:
        if exc.key is None or exc.reason is None:
            raise
        key = _qualify(prefix.rstrip("."), exc.key)
        raise ConfigError(f"config key '{key}': {exc.reason}", key=key, reason=exc.reason) from exc


def _qualify(path: str, key: str) -> str:
    """Join a node path and a key that may already repeat the path's tail (``a.b`` + ``b.c`` -> ``a.b.c``)."""
    p, k = path.split("."), key.split(".")
    for n in range(min(len(p), len(k)), 0, -1):
        if p[-n:] == k[:n]:
            return ".".join(p + k[n:])
    return ".".join(p + k)


def _from_dict(data: dict, source: str) -> Any:
    try:
        return OmegaConf.create(data)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config file {source!r}: {exc}") from exc


def _describe(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None)
    msg = str(exc).splitlines()[0]
    return f"config key '{key}': {msg}" if key else msg


def to_dict(cfg: Any) -> dict:
    """Plain dict of a (nested) dataclass config, JSON/YAML serialisable."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def to_yaml(cfg: Any) -> str:
    """YAML text of a config; :func:`load_config` reads it back to an equal instance."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def config_sha256(cfg: Any) -> str:
    """Digest of the resolved config (stable key order), stored as provenance in outputs."""
    text = json.dumps(to_dict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass
class ResourcesConfig:
    """Actor pool sizing for jobs that fan out over videos.

    Attributes:
        num_actors: actors to start; 0 = as many as the cluster's GPUs (or CPUs) allow.
        cpus_per_actor: CPUs reserved per actor (also its torch/OpenCV thread budget).
        gpus_per_actor: GPUs per actor, requested only when the cluster has GPUs (an actor asking
            for a GPU on a CPU-only cluster would wait forever).
        max_retries: restarts of a killed actor, and retries of the call it was running.
    """

    num_actors: int = 0
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 1.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        check(self.num_actors >= 0, "num_actors", f"must be >= 0, got {self.num_actors}")
        check(self.cpus_per_actor > 0, "cpus_per_actor", f"must be > 0, got {self.cpus_per_actor}")
        check(self.gpus_per_actor >= 0, "gpus_per_actor", f"must be >= 0, got {self.gpus_per_actor}")
        check(self.max_retries >= 0, "max_retries", f"must be >= 0, got {self.max_retries}")


def get_key(obj: Any, key: str) -> Any:
    """The value at dotted ``key`` of a nested dataclass (``get_key(s, "energy.smoothing.alpha")``)."""
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def with_overrides(obj: D, values: Mapping[str, Any]) -> D:
    """A copy of the dataclass ``obj`` with dotted keys set: ``{"energy.smoothing.alpha": 0.4}``.

    Every dataclass on a changed path is rebuilt (``dataclasses.replace``), so its ``__post_init__``
    validates the new combination; ``obj`` itself is not modified.

    Raises:
        ConfigError: an unknown key, or a value / combination the configs reject (names the key).
    """
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    names = {f.name for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    for key, value in values.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ConfigError(f"config key {key!r}: {type(obj).__name__} has no {head!r}", key=key)
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub in nested.items():
        direct[head] = with_overrides(getattr(obj, head), sub)
    return dataclasses.replace(obj, **direct)  # type: ignore[type-var]
