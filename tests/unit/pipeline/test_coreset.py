import pytest
import torch

from patchcore_core.pipeline.coreset import (
    coreset_size,
    covering_radius,
    greedy_coreset,
    random_coreset,
    random_projection,
    reference_greedy_coreset,
)


@pytest.fixture(scope="module")
def clusters():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(30, 64, generator=g) * 5
    return centres.repeat(100, 1) + torch.randn(3000, 64, generator=g)


def test_size_uniqueness_and_determinism(clusters):
    a = greedy_coreset(clusters, ratio=0.05, seed=3)
    b = greedy_coreset(clusters, ratio=0.05, seed=3)
    assert len(a.indices) == 150 == len(a.indices.unique())
    assert torch.equal(a.indices, b.indices)
    assert not torch.equal(a.indices, greedy_coreset(clusters, ratio=0.05, seed=4).indices)


def test_same_picks_as_the_plain_greedy_loop(clusters):
    fast = greedy_coreset(clusters, count=200, projection_dim=32)
    slow = reference_greedy_coreset(clusters, 200, projection_dim=32)
    assert torch.equal(fast.indices, slow.indices)
    torch.testing.assert_close(fast.radii, slow.radii, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("active", [40, 500])
def test_a_small_working_set_changes_nothing(clusters, active):
    """Many rounds of catching up must give the plain loop's picks."""
    fast = greedy_coreset(clusters, count=300, projection_dim=32, active=active)
    slow = reference_greedy_coreset(clusters, 300, projection_dim=32)
    assert torch.equal(fast.indices, slow.indices)
    torch.testing.assert_close(fast.radii, slow.radii, rtol=1e-4, atol=1e-3)


def test_covering_radius_never_grows_and_matches_its_definition(clusters):
    res = greedy_coreset(clusters, count=100, projection_dim=128)  # 64 dims: no projection
    assert torch.all(res.radii[1:] <= res.radii[:-1] + 1e-4)
    assert res.radii[-1].item() == pytest.approx(covering_radius(clusters, res.indices), rel=1e-4)


def test_greedy_covers_better_than_random(clusters):
    greedy = greedy_coreset(clusters, count=30, projection_dim=128)
    rand = random_coreset(clusters, count=30)
    # 30 clusters, 30 picks: greedy hits every cluster, random misses some.
    assert covering_radius(clusters, greedy.indices) < 0.6 * covering_radius(clusters, rand.indices)


def test_every_point_can_be_picked_even_with_duplicates():
    x = torch.zeros(50, 8)
    x[:5] = torch.randn(5, 8)
    res = greedy_coreset(x, ratio=1.0)
    assert sorted(res.indices.tolist()) == list(range(50))


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, None])
def test_ratio_outside_0_1_is_refused(ratio):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        coreset_size(100, ratio)


def test_random_projection_keeps_distances_roughly():
    x = torch.randn(200, 1024)
    p = random_projection(x, 128)
    ratio = torch.pdist(p) / torch.pdist(x)
    assert p.shape == (200, 128) and 0.8 < ratio.mean() < 1.2
