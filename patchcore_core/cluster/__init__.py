"""PatchCore on a Ray cluster: features, coreset, search and sweeps spread over machines.

Needs the optional extra (``pip install 'patchcore-core[cluster]'``); the
rest of the package never imports Ray.

    >>> from patchcore_core import PatchCore
    >>> from patchcore_core.cluster import RayCluster
    >>> cluster = RayCluster("auto")                     # doctest: +SKIP
    >>> model = PatchCore(work=cluster).fit(paths)    # doctest: +SKIP

* :mod:`.connect`: join or start a cluster; the errors it raises;
* :mod:`.core`: :class:`RayCluster`, the fit's steps as tasks;
* :mod:`.worker`: what the tasks run on the workers;
* :mod:`.bank`: the memory bank sharded over actors (exact faiss per shard);
* :mod:`.sweep`: evaluations (categories, seeds, settings) as tasks, one table back.

The composable coreset itself is plain torch: :mod:`patchcore_core.ext.composable`.
"""

from .bank import ShardedMemoryBank, merge_shard_answers
from .connect import ClusterError, ShardLostError, alive_nodes, connect
from .core import RayCluster
from .sweep import run_sweep

__all__ = ["RayCluster", "ShardedMemoryBank", "merge_shard_answers", "ClusterError", "ShardLostError",
           "connect", "alive_nodes", "run_sweep"]
