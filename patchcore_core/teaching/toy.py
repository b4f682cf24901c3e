"""A 2-D toy for the greedy k-center coreset (Algorithm 1 of the paper).

The memory bank lives in 152 or 1024 dimensions, where nobody can look.
The same algorithm on a few hundred points in the plane shows what it
does: each pick is the point farthest from all earlier picks, so the
*covering radius* (how far the worst-covered point is from its nearest
centre) shrinks with every pick, and rare but normal points are covered
early. Random subsampling leaves them out.

    >>> pts = toy_points()
    >>> trace = greedy_kcenter(pts, 20)
    >>> bool(np.all(np.diff(trace.radii) <= 0))
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Circle

from patchcore_core.pipeline.coreset import covering_radius, reference_greedy_coreset

__all__ = ["toy_points", "KCenterTrace", "greedy_kcenter", "kcenter_state", "covering_radius_2d",
           "random_radii", "optimal_kcenter", "approximation_ratios", "plot_kcenter_step"]


def toy_points(n: int = 400, seed: int = 0, n_rare: int = 6) -> np.ndarray:
    """``[n, 2]`` points: two dense blobs, one sparse blob and ``n_rare`` rare points.

    The rare points play the part of unusual but normal patches (a logo,
    an edge): few, far from the rest, and easy for random sampling to miss.
    """
    rng = np.random.default_rng(seed)
    n_main = n - n_rare
    sizes = [n_main // 2, n_main // 3]
    sizes.append(n_main - sum(sizes))
    blobs = [rng.normal((0.0, 0.0), 0.5, (sizes[0], 2)),
             rng.normal((3.0, 1.0), 0.35, (sizes[1], 2)),
             rng.normal((1.0, 3.2), 0.8, (sizes[2], 2))]
    rare = rng.normal((4.5, 4.2), 0.15, (n_rare, 2))
    return np.concatenate(blobs + [rare]).astype(np.float64)


@dataclass
class KCenterTrace:
    """Every step of a greedy k-center run.

    ``picks[t]``: index of the ``t``-th centre; ``radii[t]``: covering
    radius once centres ``picks[:t + 1]`` are chosen (never increases).
    """

    points: np.ndarray
    picks: np.ndarray
    radii: np.ndarray

    def __len__(self) -> int:
        return len(self.picks)


def greedy_kcenter(points: np.ndarray, k: int, first: int | None = None) -> KCenterTrace:
    """Greedy k-center on 2-D points, by the package's own loop
    (:func:`~patchcore_core.pipeline.coreset.reference_greedy_coreset`, no projection):
    start at ``first`` (default: the point farthest from the mean) and
    repeatedly add the point farthest from all centres."""
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and {n}, not {k}")
    if first is None:
        first = int(np.linalg.norm(points - points.mean(0), axis=1).argmax())
    run = reference_greedy_coreset(torch.from_numpy(points), k, projection_dim=points.shape[1], first=first)
    return KCenterTrace(points, run.indices.numpy(), run.radii.double().numpy())


def covering_radius_2d(points: np.ndarray, centres_idx) -> float:
    """Largest distance from any point to its nearest centre (brute force)."""
    return covering_radius(torch.from_numpy(np.asarray(points, dtype=np.float64)),
                           torch.as_tensor(np.asarray(centres_idx), dtype=torch.long))


def kcenter_state(trace: KCenterTrace, t: int):
    """State after ``t`` picks (``1 <= t <= len(trace)``).

    Returns:
        (centres ``[t, 2]``, owner ``[n]`` (which centre covers each point),
        distance ``[n]`` to it, covering radius, index of the next pick or
        ``None`` after the last step).
    """
    if not 1 <= t <= len(trace):
        raise ValueError(f"step must be between 1 and {len(trace)}, not {t}")
    centres = trace.points[trace.picks[:t]]
    d = np.linalg.norm(trace.points[:, None, :] - centres[None], axis=2)
    owner, dist = d.argmin(1), d.min(1)
    nxt = int(dist.argmax()) if t < len(trace) else None
    return centres, owner, dist, float(dist.max()), nxt


def random_radii(points: np.ndarray, counts, seed: int = 0) -> np.ndarray:
    """Covering radius of a random subset of each size in ``counts``
    (one seeded permutation, so subsets are nested like the greedy picks)."""
    order = np.random.default_rng(seed).permutation(len(points))
    return np.array([covering_radius_2d(points, order[:c]) for c in counts])


def optimal_kcenter(points: np.ndarray, k: int, max_subsets: int = 200_000) -> tuple[float, np.ndarray]:
    """The exact k-center optimum by brute force: ``(radius, centres)``.

    k-center is NP-hard, so this tries every ``k``-subset of the points as
    centres (``C(n, k)`` of them); ``max_subsets`` refuses sizes where that
    would take minutes. Centres are points of the set, as in the coreset.
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and {n}, not {k}")
    if comb(n, k) > max_subsets:
        raise ValueError(f"C({n}, {k}) = {comb(n, k)} subsets is more than max_subsets={max_subsets}: "
                         "brute force is for tiny sets")
    d = np.linalg.norm(points[:, None] - points[None], axis=2)  # [n, n]
    best, best_c = np.inf, None
    for c in combinations(range(n), k):
        r = d[:, c].min(axis=1).max()  # the covering radius of these centres
        if r < best:
            best, best_c = r, c
    return float(best), np.array(best_c)


def approximation_ratios(n: int = 12, ks=(1, 2, 3, 4), n_sets: int = 10, seed: int = 0) -> list[dict]:
    """Greedy k-center against the exact optimum on tiny random subsets of
    the toy: for each ``k``, the worst ratio greedy / optimum over ``n_sets``
    sets of ``n`` points and over *every* first pick. The theorem
    (Gonzalez 1985) says it never exceeds 2."""
    rng = np.random.default_rng(seed)
    pool = toy_points(400, seed=seed)
    rows = []
    for k in ks:
        worst, mean, opt_sum = 0.0, 0.0, 0.0
        for _ in range(n_sets):
            pts = pool[rng.choice(len(pool), n, replace=False)]
            opt, _ = optimal_kcenter(pts, k)
            ratios = [greedy_kcenter(pts, k, first=f).radii[-1] / opt for f in range(n)]
            worst, mean, opt_sum = max(worst, max(ratios)), mean + np.mean(ratios) / n_sets, opt_sum + opt
        rows.append({"k": k, "points": n, "sets": n_sets, "mean optimum radius": opt_sum / n_sets,
                     "mean greedy / optimum": float(mean), "worst greedy / optimum": float(worst)})
    return rows


def plot_kcenter_step(trace: KCenterTrace, t: int, ax=None):
    """Points coloured by their centre, the centres, their covering circles
    (radius = current covering radius) and the point that will be picked next."""
    centres, owner, dist, radius, nxt = kcenter_state(trace, t)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 6))
    pts = trace.points
    ax.scatter(pts[:, 0], pts[:, 1], c=owner % 20, cmap="tab20", s=14, alpha=0.8, vmin=0, vmax=19)
    for c in centres:
        ax.add_patch(Circle(c, radius, fill=False, lw=1, ec="grey", alpha=0.6))
    ax.scatter(centres[:, 0], centres[:, 1], marker="*", s=260, c="black", label="centres (coreset)")
    if nxt is not None:
        ax.scatter(*pts[nxt], s=220, facecolors="none", edgecolors="red", lw=2.5,
                   label=f"next pick (distance {dist[nxt]:.2f})")
    ax.set_title(f"greedy k-center, {t} centre(s)\ncovering radius {radius:.2f}")
    ax.set_xlabel("feature 1")
    ax.set_ylabel("feature 2")
    ax.set_aspect("equal")
    lo, hi = pts.min(0) - 1, pts.max(0) + 1
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.legend(loc="lower right", fontsize=9)
    return ax.figure
