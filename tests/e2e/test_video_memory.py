"""Decoding and clip cutting of 8K video keep memory bounded by the frame size (a subprocess whose
peak RSS is measured; ~6 s on 2 cores, hence this tier)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np


def _make_8k(path: Path, n: int) -> None:
    """``n`` frames of 7680x4320 (a gradient and a moving square: cheap to encode)."""
    w, h = 7680, 4320
    base = np.full((h * 3 // 2, w), 128, np.uint8)  # yuv420p planes: Y rows, then U and V
    base[:h] = np.linspace(16, 235, w, dtype=np.uint8)[None, :]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "35"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for k in range(n):
            img = base.copy()
            img[350 * k : 350 * k + 400, 600 * k : 600 * k + 600] = 250
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="yuv420p")))
        c.mux(s.encode(None))


def test_8k_clips_and_frames_memory_bounded_by_frame_size(tmp_path):
    # 12 frames: the unbounded decode queue of full-size RGB frames (100 MB each at 8K) and x264's
    # default threads and look-ahead took ~1.9 GB for these clips; bounded, it stays near 1.1 GB.
    src = tmp_path / "8k.mp4"
    _make_8k(src, 12)
    outs = [str(tmp_path / f"c{k}.mp4") for k in range(3)]
    work = f"""
import time
from laps_ray.io.video import iter_frames, probe, write_clips
assert write_clips({str(src)!r}, [(1, 5), (6, 11), (3, 9)], {outs!r}) == [5, 6, 7]  # overlapping
assert [probe(p).num_frames for p in {outs!r}] == [5, 6, 7]
n = 0
for f in iter_frames({str(src)!r}):  # full-size RGB frames, consumed slower than they are decoded
    assert f.image.shape == (4320, 7680, 3)
    time.sleep(0.1)
    n += 1
assert n == 12
"""
    # The work runs in a grandchild, so its peak RSS is the only child's peak the middle process sees.
    measure = (
        "import resource, subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {work!r}], check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", measure], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    peak_mb = int(done.stdout.split()[-1]) / 1024  # Linux ru_maxrss is in KiB
    assert peak_mb < 1500, f"peak RSS {peak_mb:.0f} MB"
