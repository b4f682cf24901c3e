"""PatchCore on one process and on a two-node Ray cluster (magnetic tile), and a projection.

    python benchmarks/bench_cluster.py                      # all 761 training images (long)
    python benchmarks/bench_cluster.py --limit 200          # a subset: same steps, minutes

Each side runs in a fresh process (its peak memory is its own): ``single``
fits and evaluates as ``patchcore evaluate`` does; ``cluster`` starts a head
and a worker node on 127.0.0.1 (Ray's ``cluster_utils``, one CPU each) and
runs the same evaluation through :class:`~patchcore_core.cluster.RayCluster`
with the single-machine greedy coreset run too, for its covering radius.

Two cores cannot show a speed-up. What they can show is the cost of each
term, measured: seconds per image of feature extraction, the greedy
coreset's seconds per (point x pick) on a shard and in the merge, and the
bytes the features take. From those the projection prints, for 10k, 100k
and 1M training images on 1, 8 and 64 nodes, the time of each term and
which one dominates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Keep Ray on the loopback: it otherwise swaps 127.0.0.1 for this machine's network address
# (tests/integration/test_cluster.py says more). Read when ray is imported.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "magnetic_tile"
KEYS = ["image_auroc", "pixel_auroc", "aupro", "fit_seconds", "radius_seconds", "memory_bank_size",
        "covering_radius", "single_machine_covering_radius"]
BANDWIDTH = 1.25e9  # bytes/s between nodes: 10 Gbit Ethernet


def run_side(args, side: str) -> dict:
    from patchcore_core.evaluation.category import evaluate_category, peak_rss_mb

    config = {"image_size": args.image_size, "coreset_ratio": args.ratio}
    if side == "single":
        res = evaluate_category(args.data, args.category, shots=args.limit, device="cpu", progress=False,
                                measure_radius=True, **config)
        return {**res.metrics, "peak_rss_mb_per_node": {"driver (head)": round(peak_rss_mb(), 1)},
                "model_stats": res.model.stats}

    import ray
    from ray.cluster_utils import Cluster

    from patchcore_core.cluster import RayCluster

    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 2 << 30}
    nodes = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        nodes.add_node(**node)
        nodes.wait_for_nodes(timeout=300)
        ray.init(address=nodes.address, include_dashboard=False, log_to_driver=False)
        cluster = RayCluster(nodes.address, single_machine_radius=True, timeout_s=7200)
        res = evaluate_category(args.data, args.category, shots=args.limit, device="cpu", progress=False,
                                work=cluster, **config)
        model = res.model
        peaks = {f"node {i} workers": v for i, v in enumerate(cluster.stats["peak_rss_mb_per_node"].values())}
        return {**res.metrics, "peak_rss_mb_per_node": {"driver (head)": round(peak_rss_mb(), 1), **peaks},
                # sizes of what went to and from tasks and actors: an upper bound on what crossed
                # between the nodes (a task on the driver's node reads its objects locally)
                "bytes_between_nodes": cluster.stats["bytes_between_nodes"],
                "search_bytes": model.bank.shipped_bytes - model.bank.nbytes,
                "extract_seconds_per_image": cluster.stats["extract_task_seconds_per_image"],
                "coreset_calls": cluster.stats["coreset_calls"],
                "patches_per_image": model.grid[0] * model.grid[1],
                "feature_dim": model.bank.features.shape[1], "model_stats": model.stats,
                "cluster_stats": {k: v for k, v in cluster.stats.items() if k != "extract_pids"}}
    finally:
        ray.shutdown()
        nodes.shutdown()


def projection(measured: dict, ratio: float) -> list[dict]:
    """Seconds of each term for N images on s nodes (one worker each), from the measured constants."""
    call = max(measured["coreset_calls"], key=lambda c: c["rows"])  # the bank's own call, the largest
    c_shard = sum(t / (n * k) for t, n, k in zip(call["shard_seconds"], call["shard_rows"],
                                                  call["shard_picks"])) / len(call["shard_seconds"])
    c_merge = max(call["merge_seconds"], 1e-6) / (call["merge_rows"] * call["k"])
    t_img = measured["extract_seconds_per_image"]
    p, d = measured["patches_per_image"], measured["feature_dim"]
    rows = []
    for n_img in (10_000, 100_000, 1_000_000):
        for s in (1, 8, 64):
            for scheme in ("k", "2k/s"):
                if s == 1 and scheme != "k":
                    continue  # one node: plain greedy, nothing to merge
                n = n_img * p
                k = ratio * n
                # picks per shard: k (textbook, with the guarantee) or 2k/s (oversample=2: no guarantee)
                k_s = min(k if scheme == "k" else 2 * k / s, n / s)
                terms = {"features": t_img * n_img / s,
                         "shard coreset": c_shard * (n / s) * k_s,
                         "merge": c_merge * s * k_s * k if s > 1 else 0.0,
                         "transfer": n * d * 4 * (s - 1) / s / BANDWIDTH}
                rows.append({"images": n_img, "nodes": s, "picks per shard": scheme,
                             **{t: _hours(v) for t, v in terms.items()},
                             "features GB": round(n * d * 4 / 1e9, 1), "dominant": max(terms, key=terms.get)})
    return rows


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds:,.0f} s"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA), help="MVTec-layout root (default: %(default)s)")
    p.add_argument("--category", default="mtd")
    p.add_argument("--limit", type=int, help="use only this many training images (default: all)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--ratio", type=float, default=0.1)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--side", choices=["single", "cluster"], help=argparse.SUPPRESS)  # one side, in a child
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--tables-from", metavar="JSON", help="print the tables of a saved --json run again")
    args = p.parse_args()
    if args.tables_from:
        saved = json.loads(Path(args.tables_from).read_text())["results"]
        print_tables(saved, args)
        return 0
    if args.side:
        Path(args.out).write_text(json.dumps(run_side(args, args.side), default=str))
        return 0
    if not Path(args.data, args.category).is_dir():
        print(f"skipped: {Path(args.data, args.category)} is not there", file=sys.stderr)
        return 0

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("single", "cluster"):
            out = Path(tmp) / f"{side}.json"
            cmd = [sys.executable, __file__, "--side", side, "--out", str(out), "--data", args.data,
                   "--category", args.category, "--image-size", str(args.image_size),
                   "--ratio", str(args.ratio)]
            if args.limit:
                cmd += ["--limit", str(args.limit)]
            print("$", " ".join(cmd), flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            wall = round(time.perf_counter() - t0, 1)
            results[side] = {**json.loads(out.read_text()), "wall_seconds": wall}
    for r in results.values():  # the radii are measurements, not part of fitting: timed apart
        r["fit_seconds"] = round(r["fit_seconds"] - r["model_stats"].get("radius_seconds", 0), 1)
        r["radius_seconds"] = r["model_stats"].get("radius_seconds")
    proj = print_tables(results, args)
    if args.json:
        text = json.dumps({"results": results, "projection": proj}, indent=1, default=str)
        Path(args.json).write_text(text)
    return 0


def print_tables(results: dict, args) -> list[dict]:
    from patchcore_core.util.tables import format_table

    rows = [{"run": side, **{k: r.get(k) for k in KEYS},
             "peak RSS MB": ", ".join(f"{n} {v:,.0f}" for n, v in r["peak_rss_mb_per_node"].items()),
             "MB to/from tasks, fit": round(r.get("bytes_between_nodes", 0) / 2**20, 1),
             "MB to/from shards, test queries": round(r.get("search_bytes", 0) / 2**20, 1)}
            for side, r in results.items()]
    s = results["single"]
    print(f"\n{args.category}, {s['n_train']} training images, {s['n_test']} test images, "
          f"image size {args.image_size}, coreset ratio {args.ratio}")
    print(format_table(rows, markdown=True))
    c = results["cluster"]
    call = max(c["coreset_calls"], key=lambda x: x["rows"])
    costs = [{"term": "feature extraction",
              "measured": f"{c['extract_seconds_per_image'] * 1000:.0f} ms per image"},
             {"term": "greedy on a shard", "measured": ", ".join(
                 f"{t:.1f} s ({n:,} points x {k:,} picks)" for t, n, k in
                 zip(call["shard_seconds"], call["shard_rows"], call["shard_picks"]))},
             {"term": "merge (greedy on the union)",
              "measured": f"{call['merge_seconds']:.1f} s "
                          f"({call['merge_rows']:,} points x {call['k']:,} picks)"}]
    print(format_table(costs, markdown=True))
    proj = projection(c, args.ratio)
    print("\nProjection (one worker per node; time of each term, the coreset's at the measured constants):")
    print(format_table(proj, markdown=True))
    return proj


if __name__ == "__main__":
    sys.exit(main())
