"""The 2-D greedy k-center toy of notebook 02."""

import matplotlib
import numpy as np
import pytest

from patchcore_core.teaching.toy import (
    covering_radius_2d,
    greedy_kcenter,
    kcenter_state,
    plot_kcenter_step,
    random_radii,
    toy_points,
)

matplotlib.use("Agg")


def test_toy_points_are_deterministic_and_include_rare_points():
    a, b = toy_points(200, seed=1), toy_points(200, seed=1)
    assert a.shape == (200, 2) and np.array_equal(a, b)
    assert not np.array_equal(a, toy_points(200, seed=2))
    assert (np.linalg.norm(a - (4.5, 4.2), axis=1) < 1).sum() >= 6  # the rare cluster


def test_greedy_radius_never_grows_and_matches_brute_force():
    pts = toy_points(150)
    trace = greedy_kcenter(pts, 25)
    assert len(set(trace.picks.tolist())) == 25
    assert np.all(np.diff(trace.radii) <= 1e-12)
    for t in (1, 5, 25):
        assert trace.radii[t - 1] == pytest.approx(covering_radius_2d(pts, trace.picks[:t]))


def test_greedy_is_the_2_approximation_and_beats_random():
    pts = toy_points(300)
    k = 12
    greedy = greedy_kcenter(pts, k).radii[-1]
    rand = random_radii(pts, [k], seed=0)[0]
    assert greedy <= rand
    # Greedy k-center is within 2x of the optimum; the optimum is at least
    # half the smallest pairwise distance among the k+1 greedy picks.
    picks = greedy_kcenter(pts, k + 1).picks
    d = np.linalg.norm(pts[picks][:, None] - pts[picks][None], axis=2)
    lower = d[np.triu_indices(k + 1, 1)].min() / 2
    assert greedy <= 2 * lower + 1e-9


def test_greedy_covers_rare_points_early():
    pts = toy_points(400, n_rare=6)
    trace = greedy_kcenter(pts, 8)
    rare = set(range(len(pts) - 6, len(pts)))
    assert rare & set(trace.picks.tolist())


def test_kcenter_state_and_plot():
    pts = toy_points(100)
    trace = greedy_kcenter(pts, 10)
    centres, owner, dist, radius, nxt = kcenter_state(trace, 3)
    assert centres.shape == (3, 2) and owner.max() < 3
    assert radius == pytest.approx(trace.radii[2]) and nxt == trace.picks[3]
    assert kcenter_state(trace, 10)[4] is None
    with pytest.raises(ValueError):
        kcenter_state(trace, 0)
    fig = plot_kcenter_step(trace, 4)
    assert "covering radius" in fig.axes[0].get_title()
    matplotlib.pyplot.close(fig)


def test_optimal_kcenter_is_the_brute_force_optimum_and_greedy_stays_within_twice_it():
    from patchcore_core.teaching.toy import approximation_ratios, optimal_kcenter

    pts = np.array([[0.0, 0], [1, 0], [10, 0], [11, 0], [5, 5]])
    radius, centres = optimal_kcenter(pts, 2)
    # Two centres: one per pair leaves (5, 5) about 6.4 from the nearest; the optimum pairs it so.
    assert radius == pytest.approx(min(np.linalg.norm(pts[:, None] - pts[list(c)][None], axis=2).min(1).max()
                                       for c in [(0, 2), (1, 2), (1, 3), (0, 3), (1, 4), (2, 4)]))
    assert len(centres) == 2
    assert optimal_kcenter(pts, 5)[0] == 0.0
    with pytest.raises(ValueError, match="brute force is for tiny sets"):
        optimal_kcenter(np.zeros((60, 2)), 10)
    rows = approximation_ratios(n=9, ks=(1, 2, 3), n_sets=4, seed=1)
    assert [r["k"] for r in rows] == [1, 2, 3]
    assert all(1.0 - 1e-9 <= r["mean greedy / optimum"] <= r["worst greedy / optimum"] <= 2.0 + 1e-9
               for r in rows)
