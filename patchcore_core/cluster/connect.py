"""Joining (or starting) a Ray cluster, and what it holds.

``address``: ``"local"`` starts a Ray instance in this process (its workers
run on this machine), ``"auto"`` joins the cluster a ``ray start`` left
running on this machine, and ``"HOST:PORT"`` joins the head node there.
Ray is imported here and nowhere at package import: the rest of
``patchcore_core`` works without the ``cluster`` extra.
"""

from __future__ import annotations

import os

__all__ = ["ClusterError", "ShardLostError", "require_ray", "connect", "alive_nodes"]


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
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home from a teaching package
    kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, Exception) as exc:  # Ray raises plain Exception too
        hint = ("start one with `ray start --head`, or use --ray local" if address == "auto"
                else "is `ray start --head` running there, with the same Ray and Python versions?")
        raise ClusterError(f"cannot join the Ray cluster at {address!r}: {exc} ({hint})") from None
    return ray


def alive_nodes() -> list[dict]:
    """The cluster's live nodes (Ray's node records), head first."""
    ray = require_ray()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return sorted(nodes, key=lambda n: not n.get("Resources", {}).get("node:__internal_head__", 0))
