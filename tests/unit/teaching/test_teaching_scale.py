"""Notebook 07's helpers (patchcore_core.teaching.scale) on the built-in brick data."""

import matplotlib
import numpy as np
import pytest

from patchcore_core.teaching import scale
from patchcore_core.util.tables import format_table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # spin-waiting threads crawl on a few shared cores
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def feats(builtin_root):
    return scale.category_features(builtin_root, "brick", max_test=12)


def test_category_features_keep_both_classes(feats):
    assert feats["train"].shape[1:3] == feats["test"].shape[1:3] == (28, 28)
    assert len(feats["labels"]) == 12 and 0 < feats["labels"].sum() < 12
    assert feats["masks"].shape == (12, feats["image_size"], feats["image_size"])


def test_growth_table_grows(feats):
    rows = scale.growth_table(feats["train"], feats["test"], counts=[8, 2, 4])
    assert [r["n_train"] for r in rows] == [2, 4, 8]
    h, w = feats["train"].shape[1:3]
    assert [r["bank_rows"] for r in rows] == [2 * h * w, 4 * h * w, 8 * h * w]
    assert all(r["coreset_rows"] == round(0.1 * r["bank_rows"]) for r in rows)
    assert all(r["search_ms_full"] > 0 and r["coreset_s"] > 0 for r in rows)
    assert "bank_rows" in format_table(rows)
    fig = scale.plot_growth(rows)
    assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 2
    plt.close(fig)


def test_nprobe_table_reaches_exact_search(feats):
    rows = scale.nprobe_table(feats["train"][:8], feats["test"], feats["labels"], nprobes=[1, 4, 10_000])
    exact = rows[0]
    assert exact["backend"] == "faiss (exact)" and exact["recall_at_1"] == 1.0
    flat = [r for r in rows if r["backend"] == "ivf_flat"]
    pq = [r for r in rows if r["backend"] == "ivf_pq"]
    assert [r["nprobe"] for r in flat][-1] == flat[0]["nlist"]  # capped at nlist
    recalls = [r["recall_at_1"] for r in flat]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0  # every cell probed: exact
    assert flat[-1]["image_auroc"] == pytest.approx(exact["image_auroc"])
    assert pq[-1]["recall_at_1"] > 0.95 and 0 < pq[0]["scanned"] < 1
    fig = scale.plot_nprobe(rows, highlight=4)
    assert len(fig.axes) == 3
    assert np.isclose(fig.axes[0].lines[0].get_ydata()[-1], 1.0)
    plt.close(fig)


def test_full_scan_is_exact_on_a_plain_background():
    """A plain background: most patches are near-duplicates of a few, far from the origin. The exact
    search's float32 ``||q||^2 - 2 q.m + ||m||^2`` rounds their tiny distances (to 0 or to 0.1)
    while ivf_flat computes them directly; recall@1 must not count that rounding as misses."""
    import torch

    g = torch.Generator().manual_seed(0)
    n_train, n_test, h, w, d = 6, 2, 32, 32, 152  # large enough for faiss's exact search to use BLAS
    plain = torch.randn(3, d, generator=g) * 10  # norms about 120, as real patch features

    def images(n):
        kind = torch.randint(3, (n, h, w), generator=g)
        return plain[kind] + 1e-4 * torch.randn(n, h, w, d, generator=g)

    train, test = images(n_train), images(n_test)
    labels = np.array([0, 1])
    rows = scale.nprobe_table(train, test, labels, nprobes=[10_000], backends=("ivf_flat",), repeats=1)
    assert rows[-1]["scanned"] == 1.0 and rows[-1]["recall_at_1"] == 1.0
    # bench_knn's path: search_trial against the exact search's rows
    from patchcore_core.evaluation.search import search_trial

    bank, queries = train.flatten(0, 2).contiguous(), test.flatten(0, 2)
    exact = search_trial(bank, queries, "faiss")
    found = search_trial(bank, queries, "ivf_flat", exact_rows=exact["rows"], nprobe=rows[-1]["nlist"])
    assert found["recall_at_1"] == 1.0


def test_recall_of_rows_counts_ties_and_misses():
    import torch

    from patchcore_core.evaluation.search import recall_at_1_of_rows

    bank = torch.tensor([[100.0, 0.0], [100.0, 0.0], [0.0, 100.0]])  # rows 0 and 1 are the same patch
    queries = torch.tensor([[100.0, 1e-4], [0.0, 99.0]])
    assert recall_at_1_of_rows(queries, bank, torch.tensor([1, 2]), torch.tensor([0, 2])) == 1.0  # a tie
    assert recall_at_1_of_rows(queries, bank, torch.tensor([2, 2]), torch.tensor([0, 2])) == 0.5  # a miss
