"""The composable greedy coreset and the sharded search's merge: pure functions, no Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchcore_core.cluster.bank import merge_shard_answers
from patchcore_core.ext.composable import (
    composable_greedy_coreset,
    covering_radius_faiss,
    shard_pick_count,
    shard_rows,
)
from patchcore_core.pipeline.coreset import covering_radius, greedy_coreset
from patchcore_core.pipeline.memory_bank import knn_search
from patchcore_core.teaching.toy import toy_points


def blobs(n=3000, d=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(12, d, generator=g) * 4
    return centres[torch.randint(0, 12, (n,), generator=g)] + torch.randn(n, d, generator=g)


def test_shards_cover_every_row_once():
    rows = shard_rows(10, 3)
    assert [len(r) for r in rows] == [4, 3, 3]
    assert torch.equal(torch.cat(rows), torch.arange(10))
    with pytest.raises(ValueError, match="n_shards"):
        shard_rows(3, 4)


def test_pick_counts():
    assert shard_pick_count(100, 500, 4) == 100          # textbook: k per shard
    assert shard_pick_count(100, 60, 4) == 60            # never more than the shard holds
    assert shard_pick_count(100, 500, 4, oversample=2) == 50
    with pytest.raises(ValueError, match="oversample"):
        shard_pick_count(100, 500, 4, oversample=0)


def test_one_shard_is_the_single_machine_coreset():
    x = blobs()
    single = greedy_coreset(x, count=150, seed=3).indices
    one = composable_greedy_coreset(x, 1, count=150, seed=3).indices
    assert set(one.tolist()) == set(single.tolist())


@pytest.mark.parametrize("n_shards", [2, 4, 7])
def test_composable_coreset_size_uniqueness_and_determinism(n_shards):
    x = blobs()
    run = composable_greedy_coreset(x, n_shards, ratio=0.05, seed=1)
    assert len(run.indices) == round(0.05 * len(x))
    assert len(set(run.indices.tolist())) == len(run.indices)
    assert len(run.shard_picks) == n_shards
    union = set(torch.cat(run.shard_picks).tolist())
    assert set(run.indices.tolist()) <= union               # the merge picks among the shards' picks
    again = composable_greedy_coreset(x, n_shards, ratio=0.05, seed=1)
    assert torch.equal(run.indices, again.indices)


@pytest.mark.parametrize("n_shards", [2, 3, 5])
def test_covering_radius_obeys_the_triangle_bound_and_the_constant_factor(n_shards):
    pts = torch.from_numpy(toy_points(600, seed=2))          # 2-D: no projection, exact distances
    k = 25
    run = composable_greedy_coreset(pts, n_shards, count=k, projection_dim=2)
    radius = covering_radius(pts, run.indices)
    assert radius <= run.radius_bound + 1e-9               # max_s r_s + r_m
    single = covering_radius(pts, greedy_coreset(pts, count=k, projection_dim=2).indices)
    # greedy is within 2x of the best radius, the composable scheme within 4x: 4x of greedy's, at worst
    assert radius <= 4 * single
    assert radius >= 0.5 * single                          # greedy is a 2-approximation too


def test_faiss_covering_radius_matches_the_definition():
    x = blobs(800, 16)
    idx = greedy_coreset(x, count=40).indices
    assert covering_radius_faiss(x, x[idx], batch=100) == pytest.approx(covering_radius(x, idx), rel=1e-4)


def test_merged_shard_answers_equal_one_search_over_the_whole_bank():
    bank, queries = blobs(900, 16, seed=4), blobs(200, 16, seed=5)
    d_all, i_all = knn_search(queries, bank, k=3)
    answers = []
    for rows in shard_rows(len(bank), 4):
        d, i = knn_search(queries, bank[rows], k=3)
        answers.append(((d ** 2).numpy(), (i + rows[0]).numpy()))
    d2, idx = merge_shard_answers(answers, 3)
    assert np.array_equal(idx, i_all.numpy())
    assert np.allclose(np.sqrt(d2), d_all.numpy(), rtol=1e-5, atol=1e-5)


def test_merge_breaks_ties_by_the_lower_row_and_skips_padding():
    a = (np.array([[1.0, 4.0]]), np.array([[7, 8]]))
    b = (np.array([[1.0, np.inf]]), np.array([[2, -1]]))  # a shard with one row pads with -1
    d2, idx = merge_shard_answers([a, b], 3)
    assert idx.tolist() == [[2, 7, 8]] and d2.tolist() == [[1.0, 1.0, 4.0]]
