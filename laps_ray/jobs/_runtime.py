"""What every Ray job shares besides its command line (``_cli``): Ray start-up, inputs and
outputs checked before work, progress, and the ``run.json`` manifest.

* :func:`init_ray` joins the cluster a job belongs to or starts a private local one, and says which
  and why; jobs call it inside ``run`` once their inputs are checked.
* :func:`list_inputs` / :func:`record_unreadable` (and ``io.atomic.prepare_output_dir``): inputs and outputs
  checked before Ray starts or anything is deleted.
* :func:`item_key` / :func:`previous_items`: ``run.json`` keys and the records a re-run keeps
  (:class:`laps_ray.io.run_manifest.RunManifest` writes ``run.json``).
* :func:`record_lost`: the one message and record for a cluster that went away.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from laps_ray.actors.pool import reachable
from laps_ray.io.run_manifest import RunManifest

log = logging.getLogger("laps_ray")


class JobError(RuntimeError):
    """A job cannot go on; the message is the one-line reason shown to the user."""


# --------------------------------------------------------------------------------------------
# Ray


_connected_here = False  # True once init_ray() itself called ray.init() in this process
_cli_address: str | None = None  # --address of this process's job command line


def use_address(address: str | None) -> None:
    """Remember the command line's ``--address`` for :func:`init_ray` (``_cli.parse_cli`` calls it)."""
    global _cli_address
    _cli_address = address


def shutdown_ray() -> None:
    """Disconnect (and stop a local instance) before the summary, so worker teardown noise from
    Ray's log forwarding does not land after it. A Ray started by someone else (a test session,
    a notebook) is left alone."""
    global _connected_here
    ray = sys.modules.get("ray")
    if _connected_here and ray is not None and ray.is_initialized():
        ray.shutdown()
    _connected_here = False


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster this job belongs to, or start a private local one; say which and why.

    In order: ``address`` (or the CLI's ``--address``; ``local`` = a new private instance), then
    ``RAY_ADDRESS`` (set by ``ray job submit`` for the job's driver), then a ``ray start`` cluster on
    this machine (Ray's ``ray_current_cluster`` pointer, when something listens there), else a private
    local instance with its dashboard on 127.0.0.1. A private instance started while
    ``RAY_AUTH_MODE`` is unset gets token auth with a token that lives only in this process's
    environment (Ray would otherwise write ``~/.ray/auth_token`` as a side effect and warn about it).
    No-op when Ray is already initialised (tests, notebooks).
    """
    import ray

    if ray.is_initialized():
        return
    address = address if address is not None else _cli_address
    target, why = _choose_cluster(address)
    kwargs: dict[str, Any] = {"log_to_driver": True, "logging_level": logging.WARNING}
    if target == "local":
        kwargs.update(address="local", num_cpus=num_cpus, dashboard_host="127.0.0.1")
        if os.environ.get("RAY_AUTH_MODE") is None:
            _private_token_auth()
        log.info("starting a private local Ray (%s)", why)
    else:
        kwargs["address"] = target
        log.info("joining the Ray cluster at %s (%s)", target, why)
    global _connected_here
    t0 = time.perf_counter()
    ray.init(**kwargs)
    _connected_here = True
    res = ray.cluster_resources()
    log.info(
        "ray ready in %.1fs: %g CPU, %g GPU", time.perf_counter() - t0, res.get("CPU", 0), res.get("GPU", 0)
    )


def _private_token_auth() -> None:
    """Token auth for a private local Ray with a random token kept in this process's environment.

    What Ray 2.60 does by itself when ``RAY_AUTH_MODE`` is unset (token auth on), minus its two side
    effects: a warning on every run and a token file written into the user's home directory.
    Workers inherit the environment. Ray caches its config at import, so it is re-read here the way
    Ray's own ``_enable_token_auth`` does (a private API of the pinned Ray version).
    """
    import secrets

    from ray._raylet import AuthenticationTokenLoader, Config

    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _choose_cluster(address: str | None) -> tuple[str, str]:
    """(address to pass to ``ray.init`` or ``"local"``, the reason in words)."""
    if address == "local":
        return "local", "--address local"
    if address:
        return address, "--address"
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env:
        return env, "RAY_ADDRESS, as set by `ray job submit` or by you"
    found = _local_cluster_pointer()
    if found is not None:
        pointer, gcs = found
        if reachable(gcs):
            return (
                gcs,
                f"a `ray start` cluster on this machine, named by {pointer}; --address local avoids it",
            )
        log.warning("ignoring %s: no Ray cluster at %s (left by a killed `ray start`)", pointer, gcs)
    return "local", "no --address, no RAY_ADDRESS and no `ray start` cluster on this machine"


def _local_cluster_pointer() -> tuple[Path, str] | None:
    """Ray's pointer to "the cluster on this machine" (written by ``ray start``) and the GCS it names.

    A bare ``ray.init()`` follows ``<ray temp dir>/ray_current_cluster``; a ``ray start`` that was
    killed leaves it behind, and ``ray.init()`` would then hang forever trying to connect (ray#54715),
    so :func:`init_ray` resolves it itself and checks that something listens there.
    """
    base = os.environ.get("RAY_TMPDIR") or (
        os.environ.get("TMPDIR") if sys.platform.startswith("linux") and os.environ.get("TMPDIR") else "/tmp"
    )
    pointer = Path(base) / "ray" / "ray_current_cluster"
    try:
        gcs = pointer.read_text().strip()
    except OSError:
        return None
    return (pointer, gcs) if gcs else None


def list_inputs(root: Path, exts: Sequence[str], recursive: bool) -> Any:
    """The videos under ``root`` (``laps_ray.io.video.scan_videos``), or a one-line JobError.

    Sub-folders that cannot be listed do not stop the job (:func:`record_unreadable` reports them);
    a missing or unreadable root, or a folder with nothing to process, does.
    """
    from laps_ray.io.video import VideoError, scan_videos

    try:
        listing = scan_videos(root, exts=tuple(exts), recursive=recursive)
    except VideoError as exc:
        raise JobError(str(exc)) from None
    if not listing.videos:
        if listing.unreadable:
            folder, reason = listing.unreadable[0]
            raise JobError(
                f"{root}: no readable videos ({len(listing.unreadable)} folder(s) not listed, "
                f"first {folder}: {reason})"
            )
        raise JobError(f"{root}: no video files with extensions {list(exts)}")
    for folder, reason in listing.unreadable:
        log.warning("%s: %s; its videos are skipped, the rest are processed", folder, reason)
    return listing


def record_unreadable(manifest: RunManifest, listing: Any, root: Path) -> None:
    """One failed ``run.json`` item per sub-folder that could not be listed (key: its path + ``/``)."""
    for folder, reason in listing.unreadable:
        p = Path(folder)
        key = p.relative_to(root).as_posix() if p.is_relative_to(root) else folder
        manifest.items[key.rstrip("/") + "/"] = {"status": "failed", "reason": reason}
    manifest.write()


def record_lost(manifest: RunManifest, keys: Sequence[str], address: str, noun: str = "video") -> JobError:
    """Record ``keys`` as interrupted in ``manifest`` (a re-run resumes them) after the Ray cluster at
    ``address`` went away, and return the one-line error the job stops with."""
    for key in keys:
        manifest.record(
            key, {"status": "interrupted", "reason": f"not finished: lost the Ray cluster at {address}"}
        )
    return JobError(
        f"lost the Ray cluster at {address} (it was stopped or crashed) with {len(keys)} {noun}(s) "
        f"unfinished, marked 'interrupted' in {manifest.path}; run the same command again to resume"
    )


@contextmanager
def tune_output_as_configured() -> Iterator[None]:
    """Make Tune print only what ``RunConfig(verbose=...)`` asks for.

    Ray 2.60's new output engine prints an experiment banner, the results path and a TensorBoard
    hint pointing into Ray's temp dir even at ``verbose=0``; our jobs report progress and results
    themselves. Ray's documented ``RAY_AIR_NEW_OUTPUT=0`` selects the reporter that honours
    ``verbose``; a value the user set is kept.
    """
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    if before is None:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)


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


def item_key(video: Path, root: Path) -> str:
    """A video's key in ``run.json``: its path relative to the input folder (its name for a file)."""
    return str(video.relative_to(root)) if root.is_dir() and video.is_relative_to(root) else video.name


def previous_items(out_dir: Path) -> dict[str, Any]:
    """The ``items`` of an earlier ``run.json`` in ``out_dir`` (empty if there is none or it is unreadable):
    a re-run keeps the records of the videos it skips."""
    try:
        return json.loads((out_dir / "run.json").read_text()).get("items", {})
    except (OSError, ValueError):
        return {}
