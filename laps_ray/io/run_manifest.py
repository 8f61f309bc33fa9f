"""``run.json``: what a job run did — resolved config, versions, per-item status and timings.

Written atomically and again after every item, so a killed job leaves an accurate record of what
finished; :meth:`RunManifest.create` also writes the resolved ``config.yaml`` beside it. Used by the
jobs and by the training runs. No Ray.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laps_ray import __version__
from laps_ray.config import to_dict, to_yaml
from laps_ray.io.atomic import write_json_atomic, write_text_atomic

_VERSIONED = {  # key in run.json -> distribution that provides it
    "ray": "ray",
    "torch": "torch",
    "numpy": "numpy",
    "av": "av",
    "cv2": "opencv-python-headless",
    "h5py": "h5py",
    "vector_quantize_pytorch": "vector-quantize-pytorch",
}


def versions() -> dict[str, str]:
    """Versions of the pieces that change results, recorded in every run manifest.

    Read from the installed distributions' metadata (no import; ``vector_quantize_pytorch`` has no
    ``__version__``), falling back to the module's ``__version__`` for another OpenCV build.
    """
    from importlib import metadata

    out = {"laps_ray": __version__, "python": platform.python_version()}
    for key, dist in _VERSIONED.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            try:
                module = sys.modules.get(key) or __import__(key)
            except ImportError:
                out[key] = "not installed"
                continue
            out[key] = str(getattr(module, "__version__", "unknown"))
    return out


@dataclass
class RunManifest:
    """``run.json``: resolved config, versions, per-item status and timings; rewritten atomically.

    Re-written after every item, so a killed job leaves an accurate record of what finished.
    """

    path: Path
    job: str
    config: dict
    items: dict[str, dict] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @classmethod
    def create(cls, out_dir: Path, job: str, cfg: Any, config_yaml: bool = True, **extra: Any) -> RunManifest:
        """Start ``<out_dir>/run.json`` and write the resolved ``<out_dir>/config.yaml`` (unless
        ``config_yaml`` is False: a job whose output folder holds another config.yaml)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if config_yaml:
            write_text_atomic(out_dir / "config.yaml", to_yaml(cfg))
        m = cls(path=out_dir / "run.json", job=job, config=to_dict(cfg), extra=dict(extra))
        m.write()
        return m

    def record(self, key: str, entry: dict) -> None:
        self.items[key] = entry
        self.write()

    def not_done(self) -> dict[str, str]:
        """``{key: reason}`` of every item whose status is not ``done`` (failed, interrupted, ...)."""
        return {k: str(e.get("reason", "")) for k, e in self.items.items() if e.get("status") != "done"}

    def exit_code(self, strict: bool) -> int:
        """1 when no item produced outputs (``done`` or ``unreliable``), or with ``strict`` when any
        item is not ``done`` (failed, interrupted, unreliable); else 0."""
        produced = [e for e in self.items.values() if e.get("status") in ("done", "unreliable")]
        return 1 if not produced or (strict and self.not_done()) else 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for entry in self.items.values():
            status = str(entry.get("status", "unknown"))
            out[status] = out.get(status, 0) + 1
        return out

    def write(self, finished: bool = False) -> None:
        body = {
            "job": self.job,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "wall_seconds": round(time.time() - self.started, 3),
            "finished": finished,
            "host": platform.node(),
            "pid": os.getpid(),
            "versions": versions(),
            "config": self.config,
            **self.extra,
            "counts": self.counts(),
            "items": self.items,
        }
        write_json_atomic(self.path, body)
