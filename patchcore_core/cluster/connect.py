"""Joining (or starting) a Ray cluster, and what it holds.

``address``: ``"local"`` starts a Ray instance in this process (its workers
run on this machine), ``"auto"`` joins the cluster a ``ray start`` left
running on this machine, and ``"HOST:PORT"`` joins the head node there.
Ray is imported here and nowhere at package import: the rest of
``patchcore_core`` works without the ``cluster`` extra.

Ctrl-C while Ray starts or stops is held until it is done (:func:`sigint_held`):
a ``KeyboardInterrupt`` inside ``ray.init`` or ``ray.shutdown`` is lost in one of
Ray's callbacks, leaves its processes running, or crashes the interpreter at exit.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

__all__ = ["ClusterError", "ShardLostError", "require_ray", "connect", "disconnect", "alive_nodes",
           "sigint_held", "as_completed", "task_error"]


class ClusterError(RuntimeError):
    """The cluster could not be reached, or a task of it failed for good."""


class ShardLostError(ClusterError):
    """A memory-bank shard's actor died: its neighbours can no longer be searched."""


def require_ray():
    """The ``ray`` module, or an error that says how to get it."""
    try:
        import ray
    except ImportError:
        raise ClusterError("the Ray cluster needs the optional extra: "
                           "pip install 'patchcore-core[cluster]'") from None
    return ray


def connect(address: str = "local", num_cpus: int | None = None, timeout_s: float = 180.0):
    """Connect this process to a Ray cluster (once; later calls reuse the connection).

    Args:
        address: ``"local"``, ``"auto"`` or ``"HOST:PORT"`` of a head node.
        num_cpus: CPUs of a ``"local"`` instance (default: all of this machine's).

    Returns:
        the ``ray`` module, connected.

    Raises:
        KeyboardInterrupt: Ctrl-C came while Ray started; what had started is stopped again.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home from a teaching package
    kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    with sigint_held("stopping the Ray instance as soon as it has started") as interrupted:
        try:
            if address == "local":
                ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", **kwargs)
            else:
                ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError, Exception) as exc:  # Ray raises plain Exception
            hint = ("start one with `ray start --head`, or use --ray local" if address == "auto"
                    else "is `ray start --head` running there, with the same Ray and Python versions?")
            error = ClusterError(f"cannot join the Ray cluster at {address!r}: {exc} ({hint})")
        else:
            error = None
        if interrupted() or error:
            ray.shutdown()  # whatever ray.init started before it gave up or was interrupted
    if interrupted():  # before the error: it may have been the interrupt's doing
        raise KeyboardInterrupt
    if error:
        raise error
    return ray


def disconnect() -> None:
    """Leave the cluster, stopping the processes of a ``"local"`` instance, with Ctrl-C held
    meanwhile. Does nothing when this process is not connected (or Ray was never imported)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    with sigint_held("stopping Ray"):
        ray.shutdown()


@contextmanager
def sigint_held(note: str) -> Iterator:
    """Hold Ctrl-C (SIGINT) until the block ends; yields a function that says whether one came.

    The first Ctrl-C prints ``interrupted: <note>`` at once, so the wait is explained. Outside
    the main thread (where Python cannot set signal handlers), or where Ctrl-C does not raise
    ``KeyboardInterrupt`` (ignored, or a caller's own handler), nothing is changed.
    """
    caught: list[int] = []
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield lambda: False
        return

    def hold(signum, frame):
        if not caught:  # os.write: print() must not be re-entered from a signal handler
            os.write(2, f"interrupted: {note}...\n".encode())
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield lambda: bool(caught)
    finally:
        signal.signal(signal.SIGINT, previous)


def alive_nodes() -> list[dict]:
    """The cluster's live nodes (Ray's node records), head first."""
    ray = require_ray()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return sorted(nodes, key=lambda n: not n.get("Resources", {}).get("node:__internal_head__", 0))


def task_error(exc) -> str:
    """The worker's own exception message, not Ray's traceback around it."""
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def as_completed(refs: list, timeout_s: float, desc: str, progress: bool = False):
    """``(i, result, error)`` for each task of ``refs`` as it ends, in that order: ``error`` is
    None, or why the task failed for good (:func:`task_error`). Tasks with no answer within
    ``timeout_s`` (one deadline for all) are cancelled and come last, each with an error."""
    ray = require_ray()
    pending = {ref: i for i, ref in enumerate(refs)}
    deadline = time.monotonic() + timeout_s
    with tqdm(total=len(refs), desc=desc, disable=not progress, unit="task") as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.1, deadline - time.monotonic()))
            if not done:
                for ref, i in pending.items():  # reported, not waited for forever
                    ray.cancel(ref, force=True)
                    yield i, None, f"no answer in {timeout_s:.0f} s"
                return
            i = pending.pop(done[0])
            try:
                result, error = ray.get(done[0]), None
            except ray.exceptions.RayError as exc:
                result, error = None, task_error(exc)
            bar.update()
            yield i, result, error
