"""Shared fixtures: one local Ray per test session (started only when a test asks for it)."""

from __future__ import annotations

import logging
import os

import pytest

# Loopback tests: token auth off (a shared cluster uses RAY_AUTH_MODE=token; see README).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_local():
    """A private 2-CPU Ray instance shared by the session (~5-10 s to start on 2 cores).

    ``address="local"`` never attaches to another Ray on the machine; ``ray.shutdown()`` stops only
    this instance (never ``ray stop``, which kills every Ray on the machine).
    """
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        object_store_memory=256 * 2**20,
    )
    yield ray
    ray.shutdown()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """A real ``ray start --head`` on loopback for ``ray job submit`` tests; yields the dashboard URL.

    Started with ``--block`` in its own process group and stopped by killing that group, so only
    the processes this fixture started are touched (``ray stop`` would kill every Ray here).
    """
    import shutil
    import signal
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    bin_dir = Path(sys.executable).parent
    ray_bin = shutil.which("ray", path=str(bin_dir)) or "ray"
    port, dash = _free_port(), _free_port()
    # The job's `python` must be this interpreter (the venv), as it would be on a set-up cluster.
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PATH=path)
    log = tmp_path_factory.mktemp("ray_head") / "ray_start.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                ray_bin, "start", "--head", "--block", "--num-cpus=2", f"--port={port}",
                "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--disable-usage-stats",
                f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
                f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
                "--object-store-memory=268435456",
            ],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/version", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start failed; log:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield {"url": url, "env": env, "ray": ray_bin}
    finally:
        # Killing the head leaves Ray's "current cluster" pointer behind; a later bare ray.init()
        # on this machine would try to join the dead cluster. Remove it if it names our head.
        pointer = Path("/tmp/ray/ray_current_cluster")
        if pointer.exists() and pointer.read_text().strip().endswith(f":{port}"):
            pointer.unlink()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
