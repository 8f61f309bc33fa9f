"""report.html renders in headless Chromium (Debian's ``chromium``) to a screenshot that shows the plots."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from discovery_helpers import write_planted_outputs

from laps_ray.config import load_config
from laps_ray.jobs import cluster as cluster_job

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    import matplotlib.image

    segments, labels = write_planted_outputs(tmp_path, k=3, per_kind=10, videos=3, clips=True)
    out = tmp_path / "clusters"
    cfg = load_config(
        cluster_job.ClusterJobConfig,
        None,
        [f"segments={segments}", f"output={out}", f"labels={labels}", "backend=local", "umap.max_points=30"],
    )
    cluster_job.run(cfg)
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--screenshot={shot}", "--window-size=1200,1600", (out / "report.html").as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.is_file(), proc.stderr[-2000:]
    img = (matplotlib.image.imread(shot)[..., :3] * 255).astype(int)
    assert (img < 240).any(axis=-1).mean() > 0.01  # not blank
    # The scatter plots' dots in matplotlib's tab:blue and tab:orange: the PNGs were loaded and drawn.
    for rgb in ((31, 119, 180), (255, 127, 14)):
        near = (np.abs(img - np.array(rgb)).max(axis=-1) < 30).sum()
        assert near > 50, (rgb, near)
