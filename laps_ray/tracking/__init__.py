"""Point tracking: the :class:`Tracker` interface, OpenCV Lucas-Kanade and a CoTracker3 adapter.

Every tracker follows the same ``grid x grid`` lattice (:func:`laps_ray.core.windows.grid_points`,
row-major over the whole frame) seeded on each window's frame 0, and returns tracks (W, T, N, 2)
float32 pixel (x, y) and visibility (W, T, N) bool. OpenCV and torch are imported only when a tracker
is built.
"""

from __future__ import annotations

from laps_ray.tracking.base import TRACKER_NAMES, BaseTracker, Tracker, TrackerConfig

__all__ = ["TRACKER_NAMES", "BaseTracker", "Tracker", "TrackerConfig", "make_tracker"]


def make_tracker(cfg: TrackerConfig) -> Tracker:
    """Build the tracker named by ``cfg.name`` (weights are loaded here, once).

    Raises:
        FileNotFoundError: a CoTracker ``hub_dir`` / ``checkpoint`` is missing.
        RuntimeError: CoTracker could not be loaded (no internet, incompatible weights, bad device).
    """
    if cfg.name == "lk":
        from laps_ray.tracking.lk import LKTracker

        return LKTracker(cfg)
    from laps_ray.tracking.cotracker import CoTrackerTracker

    return CoTrackerTracker(cfg)
