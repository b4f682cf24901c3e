"""Composable coresets and sharded search on the 2-D toy (notebook 07).

The same functions the cluster runs (:mod:`patchcore_core.ext.composable`,
:func:`patchcore_core.cluster.bank.merge_shard_answers`), on a few hundred
points in the plane, without Ray: each "machine" is a shard of the points.

    >>> pts, shard_of = toy_shards(n_shards=3)
    >>> run = composable_toy(pts, 3, k=20)
    >>> run.radius <= run.bound + 1e-9
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Circle

from patchcore_core.cluster.bank import merge_shard_answers
from patchcore_core.ext.composable import composable_greedy_coreset, shard_rows
from patchcore_core.pipeline.coreset import covering_radius, greedy_coreset

from .toy import toy_points

__all__ = ["toy_shards", "ComposableToy", "composable_toy", "plot_composable", "shard_nearest",
           "merged_nearest", "plot_sharded_search"]

SHARD_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink"]


def toy_shards(n: int = 400, n_shards: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Toy points in a random order, and the shard of each (contiguous after shuffling,
    as images land on machines: every shard gets some of every blob)."""
    pts = toy_points(n, seed=seed)
    pts = pts[np.random.default_rng(seed).permutation(len(pts))]
    shard_of = np.empty(len(pts), dtype=int)
    for s, rows in enumerate(shard_rows(len(pts), n_shards)):
        shard_of[rows.numpy()] = s
    return pts, shard_of


@dataclass
class ComposableToy:
    """A composable run on the toy, with the radii to compare (all exact: 2-D, no projection)."""

    points: np.ndarray
    shard_of: np.ndarray
    shard_picks: list[np.ndarray]   # per shard, the rows it proposed
    picks: np.ndarray               # the merged picks
    single_picks: np.ndarray        # single-machine greedy, same k
    shard_radii: list[float]        # each shard's radius over its own points
    merge_radius: float             # the union's points to the merged picks
    radius: float                   # all points to the merged picks
    single_radius: float            # all points to the single-machine picks

    @property
    def bound(self) -> float:
        """``max_s r_s + r_m``: the triangle inequality's promise."""
        return max(self.shard_radii) + self.merge_radius


def composable_toy(points: np.ndarray, n_shards: int, k: int,
                   oversample: float | None = None) -> ComposableToy:
    """Greedy per shard, greedy over the union, and single-machine greedy, on 2-D points."""
    x = torch.from_numpy(np.asarray(points, dtype=np.float64))
    run = composable_greedy_coreset(x, n_shards, count=k, projection_dim=2, oversample=oversample)
    single = greedy_coreset(x, count=k, projection_dim=2).indices
    shard_of = np.empty(len(x), dtype=int)
    for s, rows in enumerate(shard_rows(len(x), n_shards)):
        shard_of[rows.numpy()] = s
    return ComposableToy(np.asarray(points), shard_of, [p.numpy() for p in run.shard_picks],
                         run.indices.numpy(), single.numpy(), run.shard_radii, run.merge_radius,
                         covering_radius(x, run.indices), covering_radius(x, single))


def plot_composable(run: ComposableToy):
    """Three panels: the shards and their picks; the union and the merged picks with their
    covering circles; the radii (shards, merge, final, single machine, bound)."""
    pts = run.points
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.6), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    a, b, c = axes
    for s, picks in enumerate(run.shard_picks):
        colour = SHARD_COLOURS[s % len(SHARD_COLOURS)]
        mine = run.shard_of == s
        a.scatter(pts[mine, 0], pts[mine, 1], s=10, c=colour, alpha=0.35)
        a.scatter(pts[picks, 0], pts[picks, 1], s=70, c=colour, marker="^", edgecolors="black", lw=0.6,
                  label=f"shard {s}: {len(picks)} picks, radius {run.shard_radii[s]:.2f}")
    a.set_title("1. each machine: greedy k-center on its own shard")
    union = np.concatenate(run.shard_picks)
    b.scatter(pts[:, 0], pts[:, 1], s=8, c="lightgrey")
    b.scatter(pts[union, 0], pts[union, 1], s=30, c="tab:grey", marker="^", label=f"union ({len(union)})")
    for p in pts[run.picks]:
        b.add_patch(Circle(p, run.radius, fill=False, lw=0.8, ec="crimson", alpha=0.5))
    b.scatter(pts[run.picks, 0], pts[run.picks, 1], s=180, c="black", marker="*",
              label=f"merged picks ({len(run.picks)})")
    b.set_title(f"2. one more greedy pass over the union\ncovering radius {run.radius:.2f}")
    for ax in (a, b):
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel("feature 1")
        ax.set_ylabel("feature 2")
    names = [f"shard {s}" for s in range(len(run.shard_radii))] + ["merge", "composable", "single machine",
                                                                    "bound"]
    values = list(run.shard_radii) + [run.merge_radius, run.radius, run.single_radius, run.bound]
    colours = [SHARD_COLOURS[s % len(SHARD_COLOURS)] for s in range(len(run.shard_radii))] + \
        ["tab:grey", "black", "tab:red", "white"]
    c.barh(names[::-1], values[::-1], color=colours[::-1], edgecolor="black")
    c.set_xlabel("covering radius")
    c.set_title("3. radii: final <= max shard + merge")
    fig.tight_layout()
    return fig


def shard_nearest(points: np.ndarray, shard_of: np.ndarray, query: np.ndarray) -> list[tuple[float, int]]:
    """Each shard's answer to one query: (distance, row of its nearest point)."""
    out = []
    for s in range(int(shard_of.max()) + 1):
        rows = np.flatnonzero(shard_of == s)
        d = np.linalg.norm(points[rows] - query, axis=1)
        out.append((float(d.min()), int(rows[d.argmin()])))
    return out


def merged_nearest(answers: list[tuple[float, int]]) -> tuple[float, int]:
    """What the cluster's merge does with one query's answers (squared distances in, as faiss gives)."""
    d2 = [np.array([[d * d]]) for d, _ in answers]
    d2m, idx = merge_shard_answers([(d, np.array([[i]])) for d, (_, i) in zip(d2, answers)], 1)
    return float(np.sqrt(d2m[0, 0])), int(idx[0, 0])


def plot_sharded_search(points: np.ndarray, shard_of: np.ndarray, query: np.ndarray, ax=None):
    """The query, each shard's nearest point (thin lines) and the winner (thick line)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 6))
    answers = shard_nearest(points, shard_of, query)
    best_d, best = merged_nearest(answers)
    for s, (d, row) in enumerate(answers):
        colour = SHARD_COLOURS[s % len(SHARD_COLOURS)]
        mine = shard_of == s
        ax.scatter(points[mine, 0], points[mine, 1], s=10, c=colour, alpha=0.35)
        ax.plot(*zip(query, points[row]), c=colour, lw=4 if row == best else 1.5, zorder=4,
                label=f"shard {s}: nearest at {d:.2f}" + ("  <- min wins" if row == best else ""))
        ax.scatter(*points[row], s=90, c=colour, edgecolors="black", zorder=5)
    ax.scatter(*query, s=60, c="crimson", marker="X", label="query patch", zorder=6)
    ax.set_title(f"sharded search: every shard answers,\nthe smallest distance ({best_d:.2f}) wins")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    return ax.figure
