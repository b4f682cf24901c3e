"""PatchCore on a real two-node Ray cluster, started on 127.0.0.1 by the tests.

Both nodes are Ray's own ``cluster_utils.Cluster`` nodes (a head and a
worker node, one CPU each: separate raylets and object stores, as on two
machines), stopped in teardown. Skipped without the ``cluster`` extra.

    pytest -m cluster tests/integration/test_cluster.py
"""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

# Ray replaces 127.0.0.1 in an address with this machine's network address (and then cannot
# reach the nodes started on the loopback); with this switch off it keeps the loopback, so
# the test cluster never leaves 127.0.0.1. Read when ray is imported: set before.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray")

import patchcore_core  # noqa: E402
import patchcore_core.cluster.core as cluster_core  # noqa: E402
from patchcore_core import PatchCore  # noqa: E402
from patchcore_core.cluster import RayCluster, ShardLostError, run_sweep  # noqa: E402
from patchcore_core.cluster.bank import ShardedMemoryBank  # noqa: E402
from patchcore_core.cluster.worker import extract_chunk  # noqa: E402
from patchcore_core.ext.ann import scaled_params  # noqa: E402
from patchcore_core.pipeline.memory_bank import MemoryBank  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]
SMALL = {"image_size": 128}  # the smallest size the default backbone takes with sigma 4: quick on 2 cores


@pytest.fixture(scope="module")
def two_nodes():
    """A head node and a worker node (1 CPU each) on 127.0.0.1, the driver connected to them."""
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 150 << 20}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes(timeout=240)
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()  # stops exactly the processes it started


@pytest.fixture(scope="module")
def fitted_on_cluster(two_nodes, brick):
    cluster = RayCluster(two_nodes.address, single_machine_radius=True, timeout_s=300)
    model = PatchCore(device="cpu", work=cluster, **SMALL).fit(brick.train[:8], progress=False)
    return cluster, model


def test_fit_runs_on_both_nodes(fitted_on_cluster, brick):
    cluster, model = fitted_on_cluster
    assert cluster.n_nodes == 2 and cluster.n_shards == 2
    assert model.stats["cluster_nodes"] == 2
    assert len(cluster.stats["peak_rss_mb_per_node"]) == 2, "the extraction tasks ran on one node only"
    assert cluster.stats["bytes_between_nodes"] > model.bank.nbytes
    # the workers' features are the driver's own (up to float rounding: other thread counts)
    local = PatchCore(device="cpu", **SMALL)
    local.preprocess = model.preprocess
    expected = local.extract(brick.train[:8])
    # ... and the same when the images travel as bytes (--ship-images: no shared filesystem)
    shipping = RayCluster(cluster.address, ship_images=True, timeout_s=300)
    again, channels = shipping.extract(model, brick.train[:8])
    assert torch.allclose(again, expected, rtol=1e-4, atol=1e-3) and channels == local.embedding.channels
    assert shipping.stats["bytes_between_nodes"] > sum(p.stat().st_size for p in brick.train[:8])


def test_composable_radius_is_close_to_the_single_machine_one(fitted_on_cluster):
    _, model = fitted_on_cluster
    single, composable = model.stats["single_machine_covering_radius"], model.stats["covering_radius"]
    assert 0 < composable <= 1.5 * single


def test_sharded_search_equals_one_index(fitted_on_cluster, brick):
    _, model = fitted_on_cluster
    bank = model.bank
    assert len(bank.actors) == 2
    feats = model.extract([t.path for t in brick.test[-3:]]).reshape(-1, bank.features.shape[1])
    d_sharded, i_sharded = bank.search(feats, k=3)
    d_one, i_one = MemoryBank(bank.features, bank.origin, "faiss").search(feats, k=3)
    assert torch.allclose(d_sharded, d_one, rtol=1e-5, atol=1e-5)
    clear = (d_one[:, 1] - d_one[:, 0]) > 1e-3  # where the nearest row is not a near tie
    assert torch.equal(i_sharded[clear, 0], i_one[clear, 0])
    # and a model with the bank on one machine scores the same images the same
    scores_cluster = model.score([t.path for t in brick.test[-3:]])[0]
    model_bank, model.bank = model.bank, MemoryBank(bank.features, bank.origin, "faiss")
    try:
        scores_one = model.score([t.path for t in brick.test[-3:]])[0]
    finally:
        model.bank = model_bank
    assert torch.allclose(scores_cluster, scores_one, rtol=1e-5)


def test_shards_train_the_configured_approximate_index(two_nodes):
    """--knn-backend reaches the shards: each trains that index on its own slice, sized to it."""
    g = torch.Generator().manual_seed(0)
    feats, queries = torch.randn(4000, 16, generator=g), torch.randn(300, 16, generator=g)
    origin = torch.zeros(len(feats), 3, dtype=torch.long)
    exact_d, exact_i = MemoryBank(feats, origin, "faiss").search(queries, k=2)
    # every cell probed: an ivf_flat shard answers exactly, so the merged answer is exact search's
    every_cell = ShardedMemoryBank(feats, origin, 2, backend="ivf_flat", ann={"nprobe": 10_000})
    assert every_cell.shard_params() == [scaled_params("ivf_flat", 2000, 16, nprobe=10_000)] * 2
    d, i = every_cell.search(queries, k=2)
    assert torch.allclose(d, exact_d, atol=1e-4) and torch.equal(i[:, 0], exact_i[:, 0])
    # an hnsw shard may miss its nearest row, never find one nearer than the exact answer
    graph = ShardedMemoryBank(feats, origin, 2, backend="hnsw")
    d, i = graph.search(queries, k=1)
    assert graph.shard_params()[0]["hnsw_m"] == 32
    assert (d[:, 0] >= exact_d[:, 0] - 1e-4).all() and (i[:, 0] == exact_i[:, 0]).float().mean() > 0.9


def test_a_cluster_model_with_an_approximate_bank_saves_and_loads(fitted_on_cluster, brick, tmp_path):
    """The file carries a trained index of the whole bank (loading never retrains it)."""
    from dataclasses import replace

    cluster, model = fitted_on_cluster
    exact_bank, exact_config = model.bank, model.config
    model.config = replace(exact_config, knn_backend="ivf_flat", nprobe=10_000)
    model.bank = cluster.shard_bank(MemoryBank(exact_bank.features, exact_bank.origin, "ivf_flat",
                                               {"nprobe": 10_000}))  # as fit shards its bank
    try:
        assert model.bank.shard_params()[0]["nprobe"] == model.bank.shard_params()[0]["nlist"]
        images = [t.path for t in brick.test[-2:]]
        scores = model.score(images)[0]
        loaded = patchcore_core.load(patchcore_core.save(model, tmp_path / "ivf.safetensors"), device="cpu")
    finally:
        model.bank, model.config = exact_bank, exact_config
    assert type(loaded.bank) is MemoryBank and loaded.bank.backend == "ivf_flat"
    assert loaded.bank._index is not None  # read from the file, not trained on first use
    assert torch.allclose(loaded.score(images)[0], scores, rtol=1e-5)


def test_a_model_fitted_on_the_cluster_saves_and_loads(fitted_on_cluster, brick, tmp_path):
    _, model = fitted_on_cluster
    loaded = patchcore_core.load(patchcore_core.save(model, tmp_path / "m.safetensors"), device="cpu")
    assert loaded.stats["cluster_nodes"] == 2 and type(loaded.bank) is MemoryBank
    images = [t.path for t in brick.test[-2:]]
    assert torch.allclose(loaded.score(images)[0], model.score(images)[0], rtol=1e-5)


def _dies_once(marker: str):
    """extract_chunk, except that the first task to run it kills its worker process at once, as if
    its node went down mid-task (deterministic, unlike killing a process from outside in time)."""
    def extract_or_die(*args, **kwargs):
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            os._exit(1)
        return extract_chunk(*args, **kwargs)
    return extract_or_die


def test_a_worker_that_dies_mid_fit_has_its_images_retried(two_nodes, brick, tmp_path, monkeypatch):
    marker = tmp_path / "crashed"
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests
    monkeypatch.setattr(cluster_core, "extract_chunk", _dies_once(str(marker)))
    cluster = RayCluster(two_nodes.address, max_retries=2, timeout_s=300)
    model = PatchCore(device="cpu", work=cluster, **SMALL).fit(brick.train[:4], progress=False)
    assert marker.exists(), "the test hook did not fire: nothing was killed"
    dead_pid = int(marker.read_text())
    assert dead_pid not in cluster.stats["extract_pids"], "the dead worker's result came back?"
    assert model.stats["n_train"] == 4 and model.stats["n_patches"] == 4 * model.grid[0] * model.grid[1]


def test_a_lost_shard_is_an_error_naming_it(fitted_on_cluster, brick):
    cluster, model = fitted_on_cluster
    bank = cluster.shard_bank(model.bank)  # a bank of its own: the other tests keep theirs
    ray.kill(bank.actors[1], no_restart=True)
    with pytest.raises(ShardLostError, match=r"shard 1 of 2 \(bank rows \d+-\d+\)"):
        bank.search(torch.zeros(2, bank.features.shape[1]))


def test_sweep_reports_a_failed_task_and_finishes_the_others(two_nodes, builtin_root):
    jobs = [{"root": builtin_root, "category": "brick", "shots": 4, "config": SMALL},
            {"root": builtin_root, "category": "no_such_category", "shots": 4, "config": SMALL}]
    rows = run_sweep(jobs, timeout_s=300)
    assert rows[0]["category"] == "brick" and "error" not in rows[0]
    assert rows[0]["image_auroc"] > 0.7 and rows[0]["covering_radius"] > 0
    assert rows[1]["category"] == "no_such_category" and "image_size=128" in rows[1]["setting"]
    assert "no_such_category" in rows[1]["error"]


def test_notebook_sweeps_run_as_ray_tasks_into_the_same_cache(two_nodes, builtin_root, tmp_path):
    """sweeps.cached_evaluations (notebook 05's sweeps): the runs go to the cluster at once, a failed
    one is a row naming its error, and the results are cached under the keys a local run reads."""
    from patchcore_core.teaching import sweeps

    small = {"image_size": 128, "calibration_fraction": 0.0, "shots": 4}
    jobs = [{**small, "coreset_ratio": r} for r in (0.05, 0.2)]
    jobs.append({"image_size": 16, "shots": 4})  # too small for the backbone: refused on the worker
    rows = sweeps.cached_evaluations(builtin_root, "brick", jobs, tmp_path, ray=two_nodes.address)
    assert [r["cached"] for r in rows[:2]] == [False, False]
    assert {r["node"] for r in rows[:2]} <= {n["NodeID"] for n in ray.nodes()}
    assert rows[0]["memory_bank_size"] < rows[1]["memory_bank_size"]
    assert "image_size" in rows[2]["error"] and "cached" not in rows[2]
    again = sweeps.cached_evaluations(builtin_root, "brick", jobs[:2], cache_dir=tmp_path)  # here, no Ray
    assert [r["cached"] for r in again] == [True, True]
    assert [r["image_auroc"] for r in again] == [r["image_auroc"] for r in rows[:2]]
    assert len(list(tmp_path.glob("brick-*.json"))) == 2


def test_cli_evaluate_with_ray_writes_cluster_fields(two_nodes, builtin_root, tmp_path):
    from patchcore_core.cli.main import main

    out = tmp_path / "r.json"
    code = main(["evaluate", "--data", str(builtin_root), "--category", "grass", "--shots", "6",
                 "--image-size", "128", "--ray", two_nodes.address, "--quiet", "--json", str(out)])
    assert code == 0
    row = json.loads(out.read_text())["grass"]
    assert row["cluster_nodes"] == 2 and row["covering_radius"] > 0
    assert row["image_auroc"] is not None and row["memory_bank_size"] > 0
    # --category all: one Ray task per category, one table
    code = main(["evaluate", "--data", str(builtin_root), "--category", "all", "--shots", "4",
                 "--image-size", "128", "--ray", two_nodes.address, "--quiet", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())
    assert sorted(rows) == ["brick", "grass", "gravel"]
    for r in rows.values():
        assert r["cluster_nodes"] == 2 and r["covering_radius"] > 0 and r["n_train"] == 4
