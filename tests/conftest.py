"""Shared fixtures (one local Ray per test session, started only when a test asks for it) and the
test tiers.

Tiers, by folder (the marker of the same name is applied here, from the folder):

* ``tests/unit/``: in-process, no Ray, no long subprocess jobs: the quick tier
  (``python -m pytest -q -p no:cacheprovider tests/unit``).
* ``tests/ray/``: the session's private local Ray (:func:`ray_local`).
* ``tests/e2e/``: ``ray start`` heads and ``ray job submit`` (:func:`ray_head`, :func:`start_ray_head`),
  job subprocesses that start their own Ray, live servers, the slow memory check.
* ``tests/gpu/``: skipped without CUDA; run by hand on a GPU machine (``pytest tests/gpu``).

The tiers enforce themselves at collection: a test that requests ``ray_local`` outside ``ray/`` and
``e2e/``, or ``ray_head`` outside ``e2e/`` (directly or through another fixture), or a test file
outside the four folders, stops the run with a message naming each such test; a ``unit`` test that
leaves Ray running fails. Tests run tier by tier: unit, gpu, ray, e2e (the gpu tier starts its own
Ray with a GPU, which must happen before the session's CPU-only ``ray_local`` exists: one Ray per
process).

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
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def private_ray(num_cpus: int = 2, num_gpus: int = 0) -> Iterator:
    """A private Ray instance in this process (yields the ``ray`` module); stopped afterwards.

    ``address="local"`` never attaches to another Ray on the machine; ``ray.shutdown()`` stops only
    this instance (never ``ray stop``, which kills every Ray on the machine). ``num_gpus`` is explicit,
    so a CPU tier behaves the same on a machine with GPUs.
    """
    import ray

    if ray.is_initialized():
        raise RuntimeError("a Ray instance is already running in this test process (one per process)")
    temp = ray_temp_dir()
    ray.init(
        address="local",
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        object_store_memory=256 * 2**20,
        _temp_dir=temp,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_local():
    """A private 2-CPU Ray instance (no GPU) shared by the session (~5-10 s to start on 2 cores)."""
    with private_ray(num_cpus=2, num_gpus=0) as ray:
        yield ray


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
                ray_bin, "start", "--head", "--block", f"--num-cpus={num_cpus}", "--num-gpus=0",
                f"--port={port}", f"--temp-dir={temp}", "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dash}", "--disable-usage-stats",
                f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                "--object-store-memory=268435456",
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


# ------------------------------------------------------------------------------- shared job inputs


@pytest.fixture(scope="session")
def preprocess_videos(tmp_path_factory) -> Path:
    """Good and bad input videos of the preprocess job (``helpers.make_preprocess_videos``)."""
    from helpers import make_preprocess_videos

    return make_preprocess_videos(tmp_path_factory.mktemp("preprocess_videos"))


@pytest.fixture(scope="session")
def synthetic_tracks(tmp_path_factory) -> Path:
    """Track files with planted motion for a ``tiny`` tokenizer (``helpers.write_synthetic_tracks``)."""
    from helpers import write_synthetic_tracks

    return write_synthetic_tracks(tmp_path_factory.mktemp("tracks"))


@pytest.fixture(scope="session")
def stream_assets(tmp_path_factory) -> dict:
    """The stream job's video, tokenizer and settings (``helpers.make_stream_assets``)."""
    from helpers import make_stream_assets

    return make_stream_assets(tmp_path_factory.mktemp("stream_assets"))


@pytest.fixture(scope="session")
def segment_inputs(tmp_path_factory) -> dict[str, Path]:
    """segment_folder's test inputs (``helpers.make_segment_folder_inputs``), shared by its unit, ray
    and e2e tests."""
    from helpers import make_segment_folder_inputs

    return make_segment_folder_inputs(tmp_path_factory.mktemp("segment_folder"))


@pytest.fixture(scope="session")
def segment_reference(ray_local, segment_inputs) -> Path:
    """The reference segment_folder run on ``good/`` (one shard per video) that sharded, resumed,
    interrupted and retried runs must equal byte for byte."""
    from helpers import segment_folder_cfg

    from laps_ray.jobs.segment_folder import run, summary

    inputs = segment_inputs
    out = inputs["dir"] / "unsharded"
    result = run(segment_folder_cfg(inputs, inputs["good"], out, "shard_seconds=0"))
    assert result.exit_code == 0 and result.done == 2 and not result.failed, summary(result)
    return out


# ------------------------------------------------------------------------------------------ tiers

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "gpu", "ray", "e2e")  # the order tests run in (see the module docstring)
ALLOWED = {  # Ray fixture -> the tiers that may use it
    "ray_local": ("ray", "e2e"),
    "ray_head": ("e2e",),
}


def tier_of(path: Path) -> str | None:
    """``unit``/``ray``/``e2e``/``gpu`` for a test file in that folder; ``""`` for a test file elsewhere
    below ``tests/``; None outside ``tests/``."""
    try:
        parts = Path(path).resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else ""


def tier_problems(tier: str, fixturenames: list[str]) -> list[str]:
    """Why a test of ``tier`` requesting ``fixturenames`` (their closure) breaks the tier rules."""
    if not tier:
        return [f"test files live in tests/{{{','.join(sorted(TIERS))}}}/ (the tier is the folder)"]
    return [
        f"uses the {name} fixture, which only {' and '.join(f'tests/{t}/' for t in allowed)} may use"
        for name, allowed in ALLOWED.items()
        if name in fixturenames and tier not in allowed
    ]


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test with its tier, stop on a broken tier rule, run the tiers in :data:`TIERS` order."""
    problems = []
    for item in items:
        tier = tier_of(item.path)
        if tier is None:
            continue
        problems += [f"{item.nodeid}: {why}" for why in tier_problems(tier, item.fixturenames)]
        if tier:
            item.add_marker(tier)
    if problems:
        raise pytest.UsageError("tests in the wrong tier:\n  " + "\n  ".join(problems))
    rank = {tier: k for k, tier in enumerate(TIERS)}
    items.sort(key=lambda item: rank.get(tier_of(item.path) or "", len(TIERS)))  # stable: order kept within


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.fixture(autouse=True)
def _unit_tests_leave_no_ray(request):
    """A unit test must not start Ray (a job's ``run`` with a Ray backend would, in-process)."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    before = _ray_running()
    yield
    if not before and _ray_running():
        pytest.fail(f"{request.node.nodeid} started Ray: Ray tests live in tests/ray/ or tests/e2e/")
