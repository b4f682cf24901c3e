"""SPADE and PaDiM-style baselines (teaching.baselines) and the logical-anomaly category (teaching.logical)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchcore_core.data import MVTecCategory, read_image, read_mask
from patchcore_core.teaching import baselines, logical


def _features(n, h=4, w=5, d=6, seed=0):
    return torch.randn(n, h, w, d, generator=torch.Generator().manual_seed(seed))


def test_spade_equals_brute_force_knn_on_the_nearest_images():
    train, test = _features(10), _features(3, seed=1)
    image, patches = baselines.spade_scores(train, test, k_images=3, k_patches=2)
    assert image.shape == (3,) and patches.shape == (3, 4, 5)
    g = torch.cdist(test.mean(dim=(1, 2)), train.mean(dim=(1, 2)))
    for t in range(3):
        near = g[t].argsort()[:3]
        assert image[t] == pytest.approx(float(g[t][near].mean()), rel=1e-5)
        gallery = train[near].reshape(-1, 6)
        d = torch.cdist(test[t].reshape(-1, 6), gallery).sort(dim=1).values[:, :2].mean(dim=1)
        assert torch.allclose(patches[t].flatten(), d, rtol=1e-4, atol=1e-5)


def test_spade_scores_a_training_image_zero_and_an_outlier_high():
    train = _features(8)
    test = torch.stack([train[2], train[2] + 5.0])
    image, patches = baselines.spade_scores(train, test, k_images=1)
    assert patches[0].abs().max() < 1e-3 and image[0] < 1e-5
    assert patches[1].min() > patches[0].max() and image[1] > image[0]


def test_padim_is_the_mahalanobis_distance_per_position():
    train, test = _features(30, d=4), _features(2, d=4, seed=3)
    fitted = baselines.padim_fit(train, eps=0.01)
    image, patches = baselines.padim_scores(fitted, test)
    i, j = 2, 3
    x = train[:, i, j].double().numpy()
    cov = np.cov(x, rowvar=False) + 0.01 * np.eye(4)
    diff = test[1, i, j].double().numpy() - x.mean(0)
    assert float(patches[1, i, j]) == pytest.approx(float(np.sqrt(diff @ np.linalg.inv(cov) @ diff)), rel=1e-4)
    assert torch.equal(image, patches.flatten(1).amax(dim=1))
    assert baselines.padim_nbytes(fitted) == (4 * 5 * 4 + 4 * 5 * 16) * 4


def test_padim_keeps_a_seeded_channel_subset_and_needs_two_images():
    train = _features(5, d=10)
    a, b = baselines.padim_fit(train, dims=4, seed=1), baselines.padim_fit(train, dims=4, seed=1)
    assert torch.equal(a["channels"], b["channels"]) and len(a["channels"]) == 4
    assert a["inv_cov"].shape == (4, 5, 4, 4)
    with pytest.raises(ValueError, match="at least 2 training images"):
        baselines.padim_fit(train[:1])


def test_padim_is_fooled_by_a_shift_of_aligned_images_where_patch_knn_is_not():
    # Aligned training images: position j always holds the value j (a ramp). Shifted by one cell, every
    # patch value still occurs in training (PatchCore/SPADE see nothing new), but at the wrong position.
    ramp = torch.arange(6.0).view(1, 1, 6, 1).expand(20, 3, 6, 1)
    train = ramp + 0.01 * torch.randn(20, 3, 6, 1, generator=torch.Generator().manual_seed(0))
    moved = torch.cat([train[:1, :, :1], train[:1, :, :-1]], dim=2)  # one cell right, the edge repeated
    test = torch.cat([train[:1], moved])                             # [2, 3, 6, 1]
    padim_image, _ = baselines.padim_scores(baselines.padim_fit(train), test)
    _, knn = baselines.spade_scores(train, test, k_images=20)
    assert padim_image[1] > 10 * padim_image[0]
    assert knn[1].max() < 0.1


def test_shifted_moves_the_image_and_repeats_the_edge():
    img = np.arange(20).reshape(4, 5)
    right = baselines.shifted(img, 2)
    assert (right[:, 2:] == img[:, :3]).all() and (right[:, :2] == img[:, :1]).all()
    up = baselines.shifted(img, 0, -1)
    assert (up[:3] == img[1:]).all() and (up[3] == img[3]).all()
    rgb = np.zeros((6, 6, 3), np.uint8)
    assert baselines.shifted(rgb, -3, 2).shape == (6, 6, 3)


def test_logical_category_is_written_once_in_the_mvtec_layout(tmp_path):
    root = logical.write_logical_dataset(tmp_path / "logical", seed=0)
    cat = MVTecCategory(root, logical.CATEGORY)
    assert len(cat.train) == logical.N_TRAIN
    assert cat.defects == sorted(logical.DEFECTS)
    assert all(t.mask_path is not None for t in cat.test if t.is_anomalous)
    for t in cat.test:
        if t.is_anomalous:
            assert read_mask(t.mask_path).any(), f"{t.path}: an anomaly marks where it is"
    before = (root / "dataset.json").stat().st_mtime_ns
    assert logical.write_logical_dataset(root) == root and (root / "dataset.json").stat().st_mtime_ns == before


def test_logical_anomalies_use_only_the_colours_of_good_images(tmp_path):
    # A logical anomaly adds no new appearance: every colour in a swapped or extra image occurs in good ones.
    root = logical.write_logical_dataset(tmp_path / "logical", seed=0)
    cat = MVTecCategory(root, logical.CATEGORY)

    def part_colours(path):
        img = np.asarray(read_image(path)).reshape(-1, 3).astype(int)
        saturated = img.max(1) - img.min(1) > 60          # the parts; the plate is grey
        return {tuple(c) for c in (img[saturated] // 40)}

    good = set().union(*(part_colours(p) for p in cat.train))
    for t in cat.test:
        if t.defect in ("swapped", "extra", "missing"):
            assert part_colours(t.path) <= good, t.path
    layout, wrong = logical._anomaly("swapped", np.random.default_rng(0))
    assert sorted(p for p in layout) == sorted(logical.PARTS) and len(wrong) == 2


def test_patchcore_scores_equal_the_distance_to_the_nearest_coreset_patch():
    train, test = _features(6), _features(2, seed=4)
    bank = baselines.patchcore_fit(train, ratio=0.5, seed=0)
    assert len(bank) == 60
    image, patches = baselines.patchcore_scores(bank, test)
    brute = torch.cdist(test.reshape(-1, 6), bank.features).min(dim=1).values.view(2, 4, 5)
    assert torch.allclose(patches, brute, rtol=1e-4, atol=1e-5)
    assert torch.equal(image, patches.flatten(1).amax(dim=1))


def test_count_parts_counts_three_on_good_images_and_two_when_one_is_missing(tmp_path):
    root = logical.write_logical_dataset(tmp_path / "logical", seed=0)
    cat = MVTecCategory(root, logical.CATEGORY)
    counts = {t.defect: [] for t in cat.test}
    for t in cat.test:
        counts[t.defect].append(logical.count_parts(read_image(t.path)))
    assert set(counts["good"]) == {3} and set(counts["swapped"]) == {3} and set(counts["missing"]) == {2}
    # "extra" puts a second copy of a part in another's slot: still three parts, each normal.
    assert set(counts["extra"]) == {3}
