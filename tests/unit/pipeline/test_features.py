import pytest
import torch

from patchcore_core.pipeline.features import PatchEmbedding, aggregate_layers, local_aggregate, patch_features


def test_local_aggregate_is_a_3x3_mean_inside():
    x = torch.randn(1, 4, 6, 6)
    y = local_aggregate(x, 3)
    assert y.shape == x.shape
    torch.testing.assert_close(y[0, :, 2, 3], x[0, :, 1:4, 2:5].mean(dim=(1, 2)))


def test_local_aggregate_size_one_is_identity_and_even_sizes_fail():
    x = torch.randn(1, 2, 5, 5)
    assert torch.equal(local_aggregate(x, 1), x)
    with pytest.raises(ValueError, match="odd"):
        local_aggregate(x, 2)


def test_unfold_keeps_each_neighbour_and_averages_to_the_mean():
    x = torch.randn(1, 4, 6, 6)
    u = local_aggregate(x, 3, mode="unfold")
    assert u.shape == (1, 4 * 9, 6, 6)
    # channel-major: channel c's 3x3 neighbourhood, row by row
    torch.testing.assert_close(u[0, :, 2, 3].view(4, 3, 3), x[0, :, 1:4, 2:5])
    # zeros outside the map in both modes, so the neighbours' mean is the mean mode
    torch.testing.assert_close(u.view(1, 4, 9, 6, 6).mean(dim=2), local_aggregate(x, 3))
    with pytest.raises(ValueError, match="mean, unfold.*'max'"):
        local_aggregate(x, 3, mode="max")


def test_layers_are_brought_to_the_first_grid():
    maps = {"a": torch.randn(2, 3, 8, 8), "b": torch.randn(2, 5, 4, 4)}
    layers, grid = aggregate_layers(maps, 3)
    assert grid == (8, 8)
    assert [l.shape for l in layers] == [(2, 3, 8, 8), (2, 5, 8, 8)]
    layers, _ = aggregate_layers(maps, 3, mode="unfold")
    assert [l.shape for l in layers] == [(2, 27, 8, 8), (2, 45, 8, 8)]


def test_patch_features_shape_and_order():
    maps = {"a": torch.randn(2, 40, 6, 6), "b": torch.randn(2, 112, 3, 3)}
    f, grid = patch_features(maps)
    assert grid == (6, 6) and f.shape == (2 * 36, 1024)
    # Row-major order: image, row, column.
    f2, _ = patch_features({k: v[1:] for k, v in maps.items()})
    torch.testing.assert_close(f[36:], f2)


def test_compact_features_keep_every_distance():
    emb = PatchEmbedding([40, 112], 1024, 1024)
    assert emb.compact_dim == 152
    r = torch.randn(300, 152, dtype=torch.float64)
    full, compact = emb.full(r), emb.compact(r)
    torch.testing.assert_close(torch.cdist(compact, compact), torch.cdist(full, full), rtol=1e-9, atol=1e-5)


def test_each_layer_weighs_the_same():
    """Per-layer pooling to a fixed width: a unit change in every channel of
    either layer moves the feature by the same amount."""
    emb = PatchEmbedding([8, 64], 32, 32)
    one = torch.zeros(2, 72, dtype=torch.float64)
    one[0, :8] = 1.0
    one[1, 8:] = 1.0
    norms = emb.full(one).norm(dim=1)
    torch.testing.assert_close(norms[0], norms[1])


def test_wide_layers_are_not_compacted():
    emb = PatchEmbedding([512, 1024], 1024, 1024)
    assert emb.L is None and emb.compact_dim == 1024
