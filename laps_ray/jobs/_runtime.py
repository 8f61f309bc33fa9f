"""What every job shares: argument parsing, logging, Ray start-up, actor fan-out, run manifests.

A job module is ``XJobConfig`` + ``run(cfg) -> XResult`` + ``main()``; ``main`` calls
:func:`parse_job_config`, :func:`init_ray` and ``run``, prints where the outputs went and exits
non-zero with a one-line reason on failure (:func:`job_main`).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from laps_ray import __version__
from laps_ray.config import ConfigError, load_config, to_dict
from laps_ray.io.atomic import write_json_atomic

log = logging.getLogger("laps_ray")

C = TypeVar("C")


class JobError(RuntimeError):
    """A job cannot go on; the message is the one-line reason shown to the user."""


# --------------------------------------------------------------------------------------------
# CLI and config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml`` and trailing ``key.sub=value`` overrides."""
    parser.add_argument("--config", type=Path, default=None, help="YAML config file (see configs/)")
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="key.sub=value", help="config overrides, applied last"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument(
        "--address",
        default=None,
        help="Ray address: omit to join the cluster this job was submitted to or start a local one; "
        "'local' forces a new local instance",
    )


def parse_job_config(
    cls: type[C], args: argparse.Namespace, flag_overrides: dict[str, Any] | None = None
) -> C:
    """Config from ``--config`` + flags (mapped to keys) + ``key=value`` overrides, in that order."""
    overrides = [f"{k}={_yaml_scalar(v)}" for k, v in (flag_overrides or {}).items() if v is not None]
    overrides += list(args.overrides)
    return load_config(cls, args.config, overrides)


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | Path):
        # Quote so that paths with spaces, ':' or '=' stay one string value.
        text = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'
    return str(v)


def setup_logging(level: str = "INFO") -> None:
    """Log lines for the terminal and ``ray job logs``; quieten chatty libraries."""
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in ("ray", "urllib3", "matplotlib", "h5py", "numba", "filelock"):
        logging.getLogger(name).setLevel(logging.WARNING)


def job_main(run: Callable[[], Any], describe: Callable[[Any], str]) -> None:
    """Run a job body; print its outputs, or a one-line reason and exit non-zero."""
    try:
        result = run()
    except (ConfigError, JobError, FileNotFoundError, ValueError) as exc:
        log.debug("job failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        _shutdown_ray()
    print(describe(result))
    code = getattr(result, "exit_code", 0)
    if code:
        sys.exit(code)


# --------------------------------------------------------------------------------------------
# Ray


_connected_here = False  # True once init_ray() itself called ray.init() in this process


def _shutdown_ray() -> None:
    """Disconnect (and stop a local instance) before the summary, so worker teardown noise from
    Ray's log forwarding does not land after it. A Ray started by someone else (a test session,
    a notebook) is left alone."""
    global _connected_here
    ray = sys.modules.get("ray")
    if _connected_here and ray is not None and ray.is_initialized():
        ray.shutdown()
    _connected_here = False


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster this process was submitted to, or start a local one.

    Under ``ray job submit`` the job's environment carries ``RAY_ADDRESS`` and a bare
    ``ray.init()`` joins that cluster. Run directly, ``ray.init()`` joins a ``ray start`` cluster
    on this machine if there is one, else starts a private instance (dashboard on 127.0.0.1).
    """
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"log_to_driver": True, "logging_level": logging.WARNING}
    if address is None and not os.environ.get("RAY_ADDRESS") and _stale_local_cluster():
        address = "local"
    if address == "local":
        kwargs.update(address="local", num_cpus=num_cpus, dashboard_host="127.0.0.1")
    elif address:
        kwargs["address"] = address
    global _connected_here
    t0 = time.perf_counter()
    ray.init(**kwargs)
    _connected_here = True
    res = ray.cluster_resources()
    log.info(
        "ray ready in %.1fs: %g CPU, %g GPU", time.perf_counter() - t0, res.get("CPU", 0), res.get("GPU", 0)
    )


def _stale_local_cluster() -> bool:
    """True if Ray's pointer to "the cluster on this machine" names a GCS nobody listens on.

    A bare ``ray.init()`` follows ``<ray temp dir>/ray_current_cluster``; a ``ray start`` that was
    killed leaves it behind, and ``ray.init()`` then hangs forever trying to connect (ray#54715).
    """
    import socket

    pointer = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    try:
        host, port = pointer.read_text().strip().rsplit(":", 1)
    except (OSError, ValueError):
        return False
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return False
    except (OSError, ValueError):
        log.warning(
            "ignoring %s: no Ray cluster at %s:%s (left by a killed `ray start`); starting a local Ray",
            pointer,
            host,
            port,
        )
        return True


def cluster_gpus() -> float:
    """Number of GPUs in the cluster (0 on CPU-only clusters)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def actor_options(cpus: float, gpus: float, retries: int = 2) -> dict[str, Any]:
    """Actor resources: GPUs only if the cluster has some (else the actor would pend forever).

    A killed actor is restarted by Ray and its in-flight call retried (``max_task_retries``); our
    outputs are atomic, so a retry redoes the item without leaving partial files.
    """
    opts: dict[str, Any] = {"num_cpus": cpus, "max_restarts": retries, "max_task_retries": retries}
    if gpus > 0 and cluster_gpus() > 0:
        opts["num_gpus"] = gpus
    return opts


@contextmanager
def reclaim_placement_groups(grace_s: float = 15.0) -> Iterator[None]:
    """Remove placement groups created inside the block that outlive it.

    Tune trials stopped early (ASHA) can leave the placement group of the ``TorchTrainer`` they
    launched behind; its CPUs stay reserved and the next Train/Tune run waits forever with no error
    (seen here: two 0.5-CPU groups left by a sweep starved a later 2-worker run). Groups that existed
    before the block are never touched; Ray's own cleanup gets ``grace_s`` seconds first.
    """
    from ray._raylet import PlacementGroupID
    from ray.util import placement_group_table, remove_placement_group
    from ray.util.placement_group import PlacementGroup

    before = set(placement_group_table())
    try:
        yield
    finally:
        deadline = time.monotonic() + grace_s
        while True:
            left = [
                pg_id
                for pg_id, info in placement_group_table().items()
                if pg_id not in before and info.get("state") != "REMOVED"
            ]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for pg_id in left:
            remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(pg_id)))
        if left:
            log.info("removed %d placement group(s) left behind by stopped trials", len(left))


def default_num_actors(requested: int, cpus_per_actor: float, gpus_per_actor: float, num_items: int) -> int:
    """``requested`` if > 0, else as many as the cluster's GPUs (or CPUs) allow, at most one per item."""
    import ray

    if requested > 0:
        return max(1, min(requested, num_items))
    res = ray.cluster_resources()
    if res.get("GPU", 0) > 0 and gpus_per_actor > 0:
        n = int(res["GPU"] // gpus_per_actor)
    else:
        n = int(res.get("CPU", 1) // max(cpus_per_actor, 1e-3))
    return max(1, min(n, num_items))


def map_unordered(
    actors: Sequence[Any], method: str, items: Sequence[Any], in_flight_per_actor: int = 1
) -> Iterator[tuple[Any, Any]]:
    """Call ``actor.<method>(item)`` for every item over a pool of actors; yield ``(item, result)``.

    Results come in completion order. An exception from one item is yielded as the result (an
    ``Exception`` instance) and the job goes on; actor deaths are retried by Ray itself (see
    :func:`actor_options`).
    """
    import ray

    pending: dict[Any, tuple[Any, Any]] = {}
    queue = list(items)
    free = [a for a in actors for _ in range(in_flight_per_actor)]
    while queue or pending:
        while queue and free:
            actor = free.pop(0)
            item = queue.pop(0)
            pending[getattr(actor, method).remote(item)] = (item, actor)
        done, _ = ray.wait(list(pending), num_returns=1)
        ref = done[0]
        item, actor = pending.pop(ref)
        free.append(actor)
        try:
            result = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - reported per item, the job goes on
            result = exc
        yield item, result


# --------------------------------------------------------------------------------------------
# Progress and manifests


class Progress:
    """A tqdm bar on a terminal; periodic log lines otherwise (e.g. under ``ray job logs``)."""

    def __init__(self, total: int, desc: str, unit: str = "video"):
        from tqdm import tqdm

        self.total, self.desc, self.done = total, desc, 0
        self._tty = sys.stderr.isatty()
        self._bar = tqdm(total=total, desc=desc, unit=unit, disable=not self._tty, dynamic_ncols=True)
        self._last_log = 0.0

    def update(self, postfix: str = "") -> None:
        self.done += 1
        self._bar.update(1)
        if postfix:
            self._bar.set_postfix_str(postfix, refresh=False)
        now = time.monotonic()
        if not self._tty and (now - self._last_log > 5.0 or self.done == self.total):
            log.info("%s: %d/%d %s", self.desc, self.done, self.total, postfix)
            self._last_log = now

    def close(self) -> None:
        self._bar.close()


def versions() -> dict[str, str]:
    """Versions of the pieces that change results, recorded in every run manifest."""
    out = {"laps_ray": __version__, "python": platform.python_version()}
    for mod in ("ray", "torch", "numpy", "av", "cv2", "h5py", "vector_quantize_pytorch"):
        module = sys.modules.get(mod)
        if module is None:
            try:
                module = __import__(mod)
            except ImportError:
                continue
        out[mod] = str(getattr(module, "__version__", "unknown"))
    return out


@dataclass
class RunManifest:
    """``run.json``: resolved config, versions, per-item status and timings; rewritten atomically.

    Re-written after every item, so a killed job leaves an accurate record of what finished.
    """

    path: Path
    job: str
    config: dict
    items: dict[str, dict] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @classmethod
    def create(cls, out_dir: Path, job: str, cfg: Any, **extra: Any) -> RunManifest:
        out_dir.mkdir(parents=True, exist_ok=True)
        m = cls(path=out_dir / "run.json", job=job, config=to_dict(cfg), extra=dict(extra))
        m.write()
        return m

    def record(self, key: str, entry: dict) -> None:
        self.items[key] = entry
        self.write()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for entry in self.items.values():
            status = str(entry.get("status", "unknown"))
            out[status] = out.get(status, 0) + 1
        return out

    def write(self, finished: bool = False) -> None:
        body = {
            "job": self.job,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "wall_seconds": round(time.time() - self.started, 3),
            "finished": finished,
            "host": platform.node(),
            "pid": os.getpid(),
            "versions": versions(),
            "config": self.config,
            **self.extra,
            "counts": self.counts(),
            "items": self.items,
        }
        write_json_atomic(self.path, body)
