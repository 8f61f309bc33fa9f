"""Shared fixtures: one local Ray per test session (started only when a test asks for it).

Isolation: every Ray these fixtures start lives in its own short temp dir (``/tmp/laps_rt_*``), so
nothing of it lands in Ray's default ``/tmp/ray``: no ``ray_current_cluster`` pointer that a bare
``ray.init()`` elsewhere on the machine would follow, no shared ``session_latest``, and two copies of
the suite (or a user's own Ray) on one machine never meet. Ports are chosen free, and only the
processes a fixture started are ever stopped (never ``ray stop``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

# Loopback tests: token auth off (a shared cluster uses RAY_AUTH_MODE=token; see README).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def ray_temp_dir() -> str:
    """A fresh, short Ray temp dir: Ray's unix sockets live under it and their paths must stay
    under 107 bytes, so not pytest's long ``tmp_path``."""
    return tempfile.mkdtemp(prefix="laps_rt_", dir="/tmp")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_local():
    """A private 2-CPU Ray instance shared by the session (~5-10 s to start on 2 cores).

    ``address="local"`` never attaches to another Ray on the machine; ``ray.shutdown()`` stops only
    this instance (never ``ray stop``, which kills every Ray on the machine).
    """
    import ray

    temp = ray_temp_dir()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        object_store_memory=256 * 2**20,
        _temp_dir=temp,
    )
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@dataclass
class RayHead:
    """A ``ray start --head --block`` in its own process group and temp dir.

    Attributes:
        url: dashboard / job server URL; gcs: ``127.0.0.1:port`` of its GCS; env: the environment a
            client (``ray job submit``) or a driver needs; ray: the ``ray`` executable; temp_dir: its
            temp dir; proc: the ``ray start`` process.
    """

    url: str
    gcs: str
    env: dict
    ray: str
    temp_dir: str
    proc: subprocess.Popen

    def __getitem__(self, key: str):  # tests read ray_head["url"], ray_head["env"], ray_head["ray"]
        return getattr(self, key)

    def kill(self) -> None:
        """SIGKILL every process of this head at once, as a crash of the machine's Ray would.

        Ray's workers put themselves in process groups of their own, so killing the head's group
        would leave them running: kill the whole session that ``ray start`` leads instead.
        """
        for pid in session_pids(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        self.proc.wait(timeout=15)

    def stop(self) -> None:
        """Stop this head and every process it started (and nothing else); remove its temp dir."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass  # already gone: kill() below still sweeps its session
        except subprocess.TimeoutExpired:
            log.info("ray start did not stop in 5 s after SIGTERM; killing its processes")
        self.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def session_pids(sid: int) -> list[int]:
    """Ids of the live processes in session ``sid`` (Linux ``/proc/<pid>/stat`` field 6)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids


def start_ray_head(log_dir: Path, num_cpus: int = 2) -> RayHead:
    """Start a loopback ``ray start --head`` with free ports and a private temp dir; wait until its
    dashboard answers. The job's ``python`` is this interpreter (the venv), as on a set-up cluster."""
    bin_dir = Path(sys.executable).parent
    ray_bin = shutil.which("ray", path=str(bin_dir)) or "ray"
    port, dash = free_port(), free_port()
    temp = ray_temp_dir()
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PATH=path)
    log = log_dir / "ray_start.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                ray_bin, "start", "--head", "--block", f"--num-cpus={num_cpus}", f"--port={port}",
                f"--temp-dir={temp}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                "--disable-usage-stats", f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}", "--object-store-memory=268435456",
            ],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    head = RayHead(f"http://127.0.0.1:{dash}", f"127.0.0.1:{port}", env, ray_bin, temp, proc)
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{head.url}/api/version", timeout=2) as r:
                if r.status == 200:
                    return head
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            head.stop()
            raise RuntimeError(f"ray start failed; log:\n{log.read_text()[-3000:]}")
        time.sleep(1)


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """A real ``ray start --head`` on loopback for ``ray job submit`` tests (:class:`RayHead`)."""
    default_pointer = Path("/tmp/ray/ray_current_cluster")
    before = default_pointer.read_text() if default_pointer.exists() else None
    head = start_ray_head(tmp_path_factory.mktemp("ray_head"))
    try:
        # Our head must not become "the cluster on this machine" for anyone's bare ray.init().
        after = default_pointer.read_text() if default_pointer.exists() else None
        assert after == before, f"ray start changed {default_pointer}: {before!r} -> {after!r}"
        yield head
    finally:
        head.stop()
