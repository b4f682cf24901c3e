"""SPADE and PaDiM-style baselines (teaching.baselines), the logical-anomaly category (teaching.logical)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchcore_core.data.mvtec import MVTecCategory
from patchcore_core.teaching import baselines, logical
from patchcore_core.util.images import read_image, read_mask


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
    want = float(np.sqrt(diff @ np.linalg.inv(cov) @ diff))
    assert float(patches[1, i, j]) == pytest.approx(want, rel=1e-4)
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


def test_shifted_moves_the_image_and_mirrors_the_uncovered_border():
    img = np.arange(20).reshape(4, 5)
    right = baselines.shifted(img, 2)
    assert (right[:, 2:] == img[:, :3]).all() and (right[:, :2] == img[:, [2, 1]]).all()
    up = baselines.shifted(img, 0, -1)
    assert (up[:3] == img[1:]).all() and (up[3] == img[2]).all()
    rgb = np.zeros((6, 6, 3), np.uint8)
    assert baselines.shifted(rgb, -3, 2).shape == (6, 6, 3)


def test_logical_categories_are_written_once_in_the_mvtec_layout(tmp_path):
    root = logical.write_logical_dataset(tmp_path / "logical", seed=0)
    for name, defects in logical.CATEGORIES.items():
        cat = MVTecCategory(root, name)
        assert len(cat.train) == logical.N_TRAIN and cat.defects == sorted(defects)
        for t in cat.test:
            if t.is_anomalous and not (name == "kit" and t.defect == "missing"):
                assert t.mask_path is not None and read_mask(t.mask_path).any(), t.path
        assert all(t.mask_path is None for t in cat.test if name == "kit" and t.defect == "missing")
    before = (root / "dataset.json").stat().st_mtime_ns
    assert logical.write_logical_dataset(root) == root
    assert (root / "dataset.json").stat().st_mtime_ns == before, "written once, then reused"


def test_logical_anomalies_are_made_of_parts_that_look_as_in_good_images(tmp_path):
    # A logical anomaly adds no new appearance: every part (a coloured blob) has the colour and the size of
    # one of the three parts of the good images.
    from scipy import ndimage

    root = logical.write_logical_dataset(tmp_path / "logical", seed=0)
    parts = {p: (np.asarray(logical.COLOURS[p]) * 255, logical._part_mask(p, 128, 128).sum())
             for p in logical.PARTS}

    def blobs(path):
        img = np.asarray(read_image(path)).astype(int)
        regions, n = ndimage.label(img.max(axis=2) - img.min(axis=2) > 60)
        return [(img[regions == r].mean(axis=0), (regions == r).sum()) for r in range(1, n + 1)]

    for name in logical.CATEGORIES:
        cat = MVTecCategory(root, name)
        for t in cat.test:
            if t.defect in ("swapped", "extra", "missing", "good"):
                for colour, size in blobs(t.path):
                    assert any(np.abs(colour - c).max() < 20 and abs(size - s) < 0.1 * s
                               for c, s in parts.values()), (t.path, colour, size)
    layout, wrong = logical._anomaly("swapped", np.random.default_rng(0))
    assert sorted(layout) == sorted(logical.PARTS) and len(wrong) == 2


def test_count_parts_counts_the_parts_of_each_kind_of_image(tmp_path):
    root = logical.write_logical_dataset(tmp_path / "logical", seed=0)
    want = {"assembly": {"good": 3, "swapped": 3, "missing": 2, "extra": 3},
            "kit": {"good": 3, "missing": 2, "extra": 4}}
    for name in logical.CATEGORIES:
        cat = MVTecCategory(root, name)
        for t in cat.test:
            if t.defect != "scratch":  # a scratch may cut a part in two
                assert logical.count_parts(read_image(t.path)) == want[name][t.defect], t.path
