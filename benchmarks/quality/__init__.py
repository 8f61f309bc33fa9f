"""Modules of ``benchmarks/segment_quality.py``: scenes, the project's runs, the peers, scoring, report."""

PEERS = ("framediff", "flow", "pelt")  # the peers' names (quality.peers computes them)
