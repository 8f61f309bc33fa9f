"""Real sample videos for benchmarks, taken from a registry package (no other downloads allowed).

The ``gradio`` wheel on PyPI ships a few short real videos in ``gradio/media_assets/videos/``. We
fetch the wheel with ``pip download --no-deps`` (it is not installed) and extract only the videos
into a cache folder. Returns an empty list when PyPI is unreachable: benchmarks then report the
generated videos only.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

WHEEL = "gradio==6.31.0"
MEMBERS = "gradio/media_assets/videos/"
DEFAULT_CACHE = Path.home() / ".cache" / "laps_ray" / "sample_videos"


def registry_sample_videos(cache: Path = DEFAULT_CACHE) -> list[Path]:
    """Paths of the real sample videos (fetched once into ``cache``)."""
    cache.mkdir(parents=True, exist_ok=True)
    videos = sorted(p for p in cache.glob("*") if p.suffix in (".mp4", ".avi"))
    if videos:
        return videos
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache), WHEEL]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        log.warning("cannot fetch %s for sample videos: %s", WHEEL, exc)
        return []
    for wheel in cache.glob("gradio-*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith(MEMBERS) and not name.endswith("/"):
                    (cache / Path(name).name).write_bytes(zf.read(name))
        wheel.unlink()
    return sorted(p for p in cache.glob("*") if p.suffix in (".mp4", ".avi"))


if __name__ == "__main__":
    for p in registry_sample_videos():
        print(p)
