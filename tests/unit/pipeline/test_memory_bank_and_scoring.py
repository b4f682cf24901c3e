import math

import numpy as np
import pytest
import torch

from patchcore_core.pipeline.memory_bank import MemoryBank, knn_search
from patchcore_core.pipeline.scoring import anomaly_map, image_scores, reweighted_image_scores


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_knn_equals_brute_force(backend):
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(500, 24, generator=g), torch.randn(70, 24, generator=g)
    d, i = knn_search(queries, bank, k=3, backend=backend, chunk_bytes=4096)
    full = torch.cdist(queries.double(), bank.double())
    ref_d, ref_i = full.topk(3, largest=False)
    assert torch.equal(i, ref_i)
    torch.testing.assert_close(d.double(), ref_d, rtol=1e-4, atol=1e-4)  # L2, not squared


def test_bank_remembers_origins():
    feats = torch.eye(4)
    origin = torch.tensor([[0, 1, 2], [0, 3, 3], [1, 0, 0], [2, 5, 6]])
    bank = MemoryBank(feats, origin)
    _, idx = bank.search(torch.tensor([[0.0, 0, 0, 0.9]]))
    assert bank.origin[idx[0, 0]].tolist() == [2, 5, 6]


def test_image_score_is_the_largest_patch_score():
    patch = torch.tensor([[[1.0, 5.0], [2.0, 0.5]], [[0.1, 0.2], [0.3, 0.4]]])
    assert image_scores(patch).tolist() == pytest.approx([5.0, 0.4])


def test_eq7_by_hand():
    # Bank on a line: m* = 0 with neighbours at 1 and 3; the test patch at -2.
    bank = MemoryBank(torch.tensor([[0.0], [1.0], [3.0], [10.0]]), torch.zeros(4, 3))
    feats = torch.tensor([[-2.0], [0.5]])
    scores = torch.tensor([2.0, 0.5])
    nearest = torch.tensor([0, 0])
    s, terms = reweighted_image_scores(feats[None], scores[None], nearest[None], bank, b=3,
                                       return_terms=True)
    d = torch.tensor([2.0, 3.0, 5.0])  # ||m_test* - m|| for m in N_3(m*) = {0, 1, 3}
    expected = (1 - math.exp(2.0) / torch.exp(d).sum()) * 2.0
    assert s.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["neighbours"][0].tolist() == [0, 1, 2] and terms["distances"][0].tolist() == d.tolist()
    assert terms["weight"].item() == pytest.approx(s.item() / 2.0)


def test_eq7_batch_equals_one_image_at_a_time():
    g = torch.Generator().manual_seed(0)
    bank = MemoryBank(torch.randn(50, 4, generator=g), torch.zeros(50, 3))
    feats = torch.randn(3, 6, 4, generator=g)
    dist, idx = bank.search(feats.reshape(-1, 4), k=1)
    scores, nearest = dist[:, 0].view(3, 6), idx[:, 0].view(3, 6)
    batch = reweighted_image_scores(feats, scores, nearest, bank, b=4)
    one = [reweighted_image_scores(feats[i:i + 1], scores[i:i + 1], nearest[i:i + 1], bank, b=4)
           for i in range(3)]
    torch.testing.assert_close(batch, torch.cat(one))
    assert ((batch <= scores.amax(1)) & (batch >= (1 - 1 / 4) * scores.amax(1) - 1e-6)).all()


def test_anomaly_map_upsamples_and_smooths():
    patch = torch.zeros(1, 8, 8)
    patch[0, 4, 4] = 1.0
    sharp = anomaly_map(patch, 64, sigma=0)
    smooth = anomaly_map(patch, 64, sigma=4)
    assert sharp.shape == smooth.shape == (1, 64, 64)
    assert smooth.max() < sharp.max()  # blurred peak is lower ...
    assert smooth.sum().item() == pytest.approx(sharp.sum().item(), rel=0.02)  # ... mass kept
    peak = np.unravel_index(int(smooth[0].argmax()), (64, 64))
    assert abs(peak[0] - 36) <= 2 and abs(peak[1] - 36) <= 2


def test_nearest_upsampling_fills_each_cell():
    patch = torch.arange(4.0).view(1, 2, 2)
    sharp = anomaly_map(patch, 8, sigma=0, upsample="nearest")
    assert torch.equal(sharp[0, :4, :4], torch.zeros(4, 4))
    assert torch.equal(sharp[0, 4:, 4:], torch.full((4, 4), 3.0))
    with pytest.raises(ValueError, match="nearest"):
        anomaly_map(patch, 8, upsample="cubic")
