"""THE actor scheduler of laps_ray jobs: a pool of our actors working through a queue of tasks.

A job (``preprocess``, ``segment_folder``, the discovery jobs) keeps only its domain callback: it
hands :meth:`ActorPool.run` the first tasks and an ``on_result(task, result)`` that records the
result and may return follow-up tasks (they go to the front of the queue: a video's export as soon
as its last shard is back, a fallback shard after a timeline mismatch). The pool owns the rest:

* **Resources**: GPUs are asked for only when the cluster has some (:func:`actor_options`; an actor
  asking for one on a CPU-only cluster would wait forever); the pool size fills the cluster unless
  given (:func:`pool_size`).
* **Start-up**: actors load their weights once; ``ready()`` returns None or the reason it cannot
  work, and the first such reason stops the job (a load that cannot succeed is not retried).
* **Retry**: Ray restarts a killed actor and retries its call (``max_restarts``/``max_task_retries``;
  outputs are atomic, so a retry redoes an item without partial files). An actor that died beyond
  its restarts is replaced (at most ``size`` times) and its task reported as :class:`TaskFailed`.
* **Cluster loss**: when actors die because the cluster itself is gone (its GCS no longer answers),
  :class:`ClusterLost` is raised with every unfinished task, instead of one error per task.

Only this layer and ``jobs/`` import Ray.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Task:
    """One call on some actor of the pool: ``actor.<method>(*args)``; ``tag`` is the job's own."""

    method: str
    args: tuple
    tag: Any = None


@dataclass
class TaskFailed:
    """The result of a task that Ray could not run (the actor died for good, or a Ray error)."""

    reason: str


class ClusterLost(RuntimeError):
    """The Ray cluster itself went away while tasks were queued or running.

    Attributes:
        unfinished: those tasks.
        address: the GCS address the pool was working with.
    """

    def __init__(self, address: str, unfinished: Sequence[Task]) -> None:
        super().__init__(f"lost the Ray cluster at {address}")
        self.address = address
        self.unfinished = list(unfinished)


class ActorStartError(RuntimeError):
    """Actors could not start (their ``ready()`` gave a reason, or Ray could not create them)."""


def cluster_gpus() -> float:
    """Number of GPUs in the cluster (0 on CPU-only clusters)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def actor_options(cpus: float, gpus: float, retries: int = 2) -> dict[str, Any]:
    """Actor resources and retries: GPUs only if the cluster has some (see module docstring)."""
    opts: dict[str, Any] = {"num_cpus": cpus, "max_restarts": retries, "max_task_retries": retries}
    if gpus > 0 and cluster_gpus() > 0:
        opts["num_gpus"] = gpus
    return opts


def pool_size(requested: int, cpus_per_actor: float, gpus_per_actor: float, num_items: int) -> int:
    """``requested`` if > 0, else as many as the cluster's GPUs (or CPUs) allow; at most one per item."""
    import ray

    if requested > 0:
        return max(1, min(requested, num_items))
    res = ray.cluster_resources()
    if res.get("GPU", 0) > 0 and gpus_per_actor > 0:
        n = int(res["GPU"] // gpus_per_actor)
    else:
        n = int(res.get("CPU", 1) // max(cpus_per_actor, 1e-3))
    return max(1, min(n, num_items))


def reachable(address: str, timeout: float = 2.0) -> bool:
    """True if something accepts TCP connections at ``host:port``."""
    try:
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def kill_actors(actors: Iterable[Any]) -> None:
    """Kill actors (their outputs are atomic: nothing half-written survives a kill)."""
    import ray

    for a in actors:
        try:
            ray.kill(a)
        except Exception as exc:  # noqa: BLE001 - a cluster that is gone has no actors left to kill
            log.debug("could not kill an actor: %s", exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ActorPool:
    """A pool of ``size`` actors of one class, created with the same arguments and options.

    Args:
        cls: the actor class (plain Python; made remote here). It must have ``ready() -> str | None``.
        args: constructor arguments (plain, picklable values: typed configs, paths).
        options: ``ray.remote(...).options`` (see :func:`actor_options`).
        size: number of actors.
        what: what the actors are, for messages (``"segment"`` → "segment actors cannot start: ...").
    """

    def __init__(self, cls: type, args: tuple, options: dict[str, Any], size: int, what: str) -> None:
        import ray

        self._remote = ray.remote(cls).options(**options)
        self._args = args
        self.size = size
        self.what = what
        self.actors: list[Any] = []
        self.replacements = 0
        self.address = ""

    def start(self) -> None:
        """Create the actors and wait until each has loaded what it holds.

        Raises:
            ActorStartError: the first reason an actor gave, or Ray's, in one line; no actor is left.
        """
        import ray

        self.address = ray.get_runtime_context().gcs_address
        self.actors = [self._remote.remote(*self._args) for _ in range(self.size)]
        try:
            errors = [e for e in ray.get([a.ready.remote() for a in self.actors]) if e]
        except ray.exceptions.RayError as exc:
            self.close()
            raise ActorStartError(
                f"{self.what} actors failed to start: {type(exc).__name__}: {_first_line(exc)}"
            ) from None
        if errors:
            self.close()
            raise ActorStartError(f"{self.what} actors cannot start: {errors[0]}")

    def close(self) -> None:
        """Kill every actor of the pool."""
        kill_actors(self.actors)
        self.actors = []

    def alive(self) -> bool:
        """True if the cluster's GCS still accepts connections."""
        return bool(self.address) and reachable(self.address)

    def run(
        self,
        tasks: Iterable[Task],
        on_result: Callable[[Task, Any], Iterable[Task] | None],
        on_start: Callable[[Task], None] | None = None,
    ) -> None:
        """Run ``tasks`` (one in flight per actor) until the queue is empty.

        ``on_result(task, result)`` gets the method's return value, or a :class:`TaskFailed`; the
        tasks it returns run next, before the rest of the queue. ``on_start(task)`` is called just
        before a task is sent to an actor.

        Raises:
            ClusterLost: the cluster went away; ``unfinished`` holds the running and queued tasks.
        """
        import ray

        queue: deque[Task] = deque(tasks)
        pending: dict[Any, tuple[Task, Any]] = {}
        free = list(self.actors)
        while queue or pending:
            while queue and free:
                task = queue.popleft()
                actor = free.pop(0)
                if on_start is not None:
                    on_start(task)
                pending[getattr(actor, task.method).remote(*task.args)] = (task, actor)
            if not pending:  # every actor died for good: nothing can run the rest
                while queue:
                    follow = on_result(queue.popleft(), TaskFailed("no worker left (actors kept dying)"))
                    queue.extendleft(reversed(list(follow or ())))
                break
            [ref], _ = ray.wait(list(pending), num_returns=1)
            task, actor = pending.pop(ref)
            try:
                result = ray.get(ref)
                free.append(actor)
            except ray.exceptions.RayActorError as exc:  # died beyond its restarts
                if not self.alive():
                    unfinished = [task, *(t for t, _ in pending.values()), *queue]
                    raise ClusterLost(self.address, unfinished) from exc
                log.error("a %s actor died and could not be restarted: %s", self.what, _first_line(exc))
                result = TaskFailed(f"worker died: {type(exc).__name__}")
                if self.replacements < self.size:
                    self.replacements += 1
                    self.actors.append(self._remote.remote(*self._args))
                    free.append(self.actors[-1])
            except ray.exceptions.RayError as exc:
                result = TaskFailed(f"worker error: {type(exc).__name__}: {_first_line(exc)}")
                free.append(actor)
            follow = on_result(task, result)
            queue.extendleft(reversed(list(follow or ())))
