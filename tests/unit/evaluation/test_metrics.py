"""Metrics checked on cases small enough to compute by hand."""

import numpy as np
import pytest

from patchcore_core.evaluation.metrics import aupro, f1_max, image_auroc, pixel_auroc, pro_curve


def test_image_auroc_by_hand():
    # Pairs (defective, good): (3,1) (3,2) (1.5,1) (1.5,2): 3 of 4 ranked right.
    assert image_auroc([1, 1, 0, 0], [3, 1.5, 1, 2]) == pytest.approx(0.75)
    assert image_auroc([1, 0], [2, 1]) == 1.0


def test_pixel_auroc_by_hand():
    masks = np.array([[[1, 0], [0, 0]]], bool)
    maps = np.array([[[0.9, 0.1], [0.95, 0.2]]])
    # The defect pixel beats 2 of the 3 normal pixels.
    assert pixel_auroc(masks, maps) == pytest.approx(2 / 3)


def test_pro_curve_and_aupro_by_hand():
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 0, :2] = True  # one region of 2 pixels; 14 normal pixels
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0], maps[0, 3, 3] = 2.0, 1.0
    fpr, pro = pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 14, 1])
    np.testing.assert_allclose(pro, [0, 0.5, 0.5, 1])
    # Area to FPR 0.3: 0.5 * 1/14 plus the trapezoid from 1/14 to 0.3.
    at_03 = 0.5 + 0.5 * (0.3 - 1 / 14) / (1 - 1 / 14)
    expected = (0.5 / 14 + (0.3 - 1 / 14) * (0.5 + at_03) / 2) / 0.3
    assert aupro(masks, maps) == pytest.approx(expected)


def test_every_region_weighs_the_same():
    """A big region found and a small one missed gives PRO 0.5, not ~1."""
    masks = np.zeros((1, 10, 10), bool)
    masks[0, :5, :] = True     # 50 px
    masks[0, 9, 9] = True      # 1 px, separate region
    maps = np.where(masks, 0.0, 0.0)
    maps[0, :5, :] = 1.0
    fpr, pro = pro_curve(masks, maps)
    assert pro[1] == pytest.approx(0.5) and fpr[1] == 0.0


def test_perfect_map_scores_one():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 2:4, 2:4] = True
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)
    assert pixel_auroc(masks, masks.astype(float)) == 1.0


def test_f1_max_by_hand():
    # Top two flagged: P 1, R 2/3 -> F1 0.8; all four: P 3/4, R 1 -> F1 6/7 (best).
    assert f1_max([1, 1, 0, 1], [0.9, 0.8, 0.5, 0.1]) == pytest.approx(6 / 7)
    assert f1_max([1, 1, 0, 0], [0.9, 0.8, 0.5, 0.1]) == pytest.approx(1.0)


def test_metrics_refuse_degenerate_masks():
    with pytest.raises(ValueError):
        aupro(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 4)))
