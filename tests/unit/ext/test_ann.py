"""Approximate nearest-neighbour backends (faiss): recall against exact
search, parameters scaled to the bank, the index saved in the model file
and checked when loaded, and the CLI flag."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import patchcore_core
from patchcore_core import PatchCore
from patchcore_core.cli.main import main as cli_main
from patchcore_core.evaluation.search import recall_at_1
from patchcore_core.ext.ann import ANN_BACKENDS, build_index, index_to_tensor, scaled_params
from patchcore_core.io.model_file import ModelFileError
from patchcore_core.pipeline.memory_bank import KNN_BACKENDS, MemoryBank


def _clustered(n: int, d: int = 32, clusters: int = 40, seed: int = 0) -> torch.Tensor:
    """Patch features are clustered, not uniform: a mixture of Gaussians."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g) * 4
    return centres[torch.randint(clusters, (n,), generator=g)] + torch.randn(n, d, generator=g)


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    """faiss's OpenMP threads spin-wait: on a few shared cores two threads
    train an IVF-PQ index ten times slower than one."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    bank, queries = _clustered(4000), _clustered(500, seed=1)
    origin = torch.zeros(len(bank), 3, dtype=torch.long)
    exact_d, exact_i = MemoryBank(bank, origin, "faiss").search(queries, k=3)
    return bank, queries, origin, exact_d, exact_i


def test_every_backend_is_a_choice():
    assert set(ANN_BACKENDS) <= set(KNN_BACKENDS) and {"faiss", "torch"} <= set(KNN_BACKENDS)


@pytest.mark.parametrize("backend", ANN_BACKENDS)
def test_recall_against_exact_search(data, backend):
    bank, queries, origin, exact_d, _ = data
    approx_d, approx_i = MemoryBank(bank, origin, backend).search(queries, k=3)
    # an approximate index can miss the nearest row, never find a nearer one
    assert (approx_d >= exact_d - 1e-4).all()
    assert recall_at_1(approx_d[:, 0], exact_d[:, 0]) >= 0.9
    # its distances are true L2 distances to the rows it returns (ivf_pq re-ranks exactly)
    true = torch.linalg.vector_norm(bank[approx_i] - queries[:, None], dim=2)
    assert torch.allclose(approx_d, true, atol=1e-3)


@pytest.mark.parametrize("backend, least", [("ivf_flat", 1.0), ("ivf_pq", 0.95)])
def test_probing_every_cell(data, backend, least):
    """Every cell probed: ivf_flat is exact; ivf_pq's codes still rank, so
    only the re-ranked candidates are exact."""
    bank, queries, origin, exact_d, _ = data
    nlist = scaled_params(backend, len(bank), bank.shape[1])["nlist"]
    approx_d, _ = MemoryBank(bank, origin, backend, {"nprobe": nlist}).search(queries)
    assert recall_at_1(approx_d[:, 0], exact_d[:, 0]) >= least


def test_recall_grows_with_nprobe(data):
    bank, queries, origin, exact_d, _ = data
    recalls = [recall_at_1(MemoryBank(bank, origin, "ivf_flat", {"nprobe": p}).search(queries)[0][:, 0],
                           exact_d[:, 0]) for p in (1, 4, 32)]
    assert recalls == sorted(recalls) and recalls[0] < recalls[-1]


def test_parameters_scale_with_the_bank():
    small, large = (scaled_params("ivf_pq", n, 152) for n in (10_000, 600_000))
    assert small["nlist"] == 10_000 // 39  # 4 sqrt(n) = 400 cells would get fewer than 39 points each
    assert large["nlist"] == round(4 * 600_000 ** 0.5)
    assert 1 <= large["nprobe"] <= large["nlist"] and 152 % large["pq_m"] == 0 and large["pq_m"] == 19
    tiny = scaled_params("ivf_flat", 20, 8)
    assert tiny["nlist"] == 1 and tiny["nprobe"] == 1  # k-means needs points per cell
    given = scaled_params("ivf_flat", 10_000, 8, nlist=50, nprobe=500)
    assert given["nlist"] == 50 and given["nprobe"] == 50  # given values win, nprobe capped
    with pytest.raises(ValueError, match="pq_m 10 must divide the feature width 152"):
        scaled_params("ivf_pq", 10_000, 152, pq_m=10)


def test_a_bad_setting_is_refused_at_config_time():
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        PatchCore(knn_backend="ivf_flat", nprobe=0)


@pytest.fixture(scope="module", params=ANN_BACKENDS)
def saved_ann(request, brick, tmp_path_factory):
    model = PatchCore(device="cpu", knn_backend=request.param, coreset="none").fit(brick.train[:6],
                                                                                   progress=False)
    path = patchcore_core.save(model, tmp_path_factory.mktemp(request.param) / "model.safetensors")
    return model, path


def test_saved_index_answers_identically(saved_ann, brick):
    model, path = saved_ann
    loaded = patchcore_core.load(path, device="cpu")
    assert loaded.bank.backend == model.config.knn_backend and loaded.bank._index is not None
    images = [t.path for t in brick.test[:4]]
    before, after = model.score(images), loaded.score(images)
    for a, b in zip(before, after):
        assert torch.equal(a, b)


def _tensors(path):
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["patchcore"], {k: f.get_tensor(k) for k in f.keys()}


def _other_index(model, backend, rows):
    params = scaled_params(backend, rows, model.bank.features.shape[1])
    return index_to_tensor(build_index(model.bank.features[:rows], params))


def _huge_size_field(t: torch.Tensor) -> torch.Tensor:
    """Every backend's index holds a flat index ("IxF2": its rows, the
    re-ranking copy or the k-means centroids); claim 2^39 bytes of rows, as a
    crafted file might to make the reader allocate half a terabyte."""
    raw = bytearray(t.numpy().tobytes())
    at = raw.find(b"IxF2") + 4 + 4 + 8 + 8 + 8 + 1 + 4  # fourcc, d, ntotal, 2 unused, is_trained, metric
    raw[at:at + 8] = (1 << 39).to_bytes(8, "little")
    return torch.frombuffer(raw, dtype=torch.uint8).clone()


CRAFTED = {
    "random bytes": lambda m, t: torch.randint(0, 256, (4096,), dtype=torch.uint8),
    "float tensor": lambda m, t: t.float(),
    "2-D": lambda m, t: t.view(1, -1),
    "truncated": lambda m, t: t[: len(t) // 2].clone(),
    "huge size field": lambda m, t: _huge_size_field(t),
    "fewer rows": lambda m, t: _other_index(m, m.config.knn_backend, len(m.bank) - 1),
    "another kind": lambda m, t: _other_index(m, "hnsw" if m.config.knn_backend != "hnsw" else "ivf_flat",
                                              len(m.bank)),
    "missing": None,
}


@pytest.mark.parametrize("what", CRAFTED)
def test_crafted_index_is_refused_naming_the_field(saved_ann, tmp_path, what):
    model, path = saved_ann
    meta, tensors = _tensors(path)
    if CRAFTED[what] is None:
        del tensors["bank.index"]
    else:
        tensors["bank.index"] = CRAFTED[what](model, tensors["bank.index"]).contiguous()
    bad = tmp_path / "crafted.safetensors"
    save_file(tensors, str(bad), metadata={"patchcore": meta})
    with pytest.raises(ModelFileError, match="'bank.index'") as info:
        patchcore_core.load(bad, device="cpu")
    assert str(bad) in str(info.value)


def test_an_index_with_an_exact_backend_is_refused(saved_ann, tmp_path):
    _, path = saved_ann
    meta, tensors = _tensors(path)
    meta = json.loads(meta)
    meta["config"]["knn_backend"] = "faiss"
    bad = tmp_path / "exact.safetensors"
    save_file(tensors, str(bad), metadata={"patchcore": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="'bank.index'.*exact"):
        patchcore_core.load(bad, device="cpu")


def test_cli_evaluate_with_ivf_pq_and_no_coreset(builtin_root, tmp_path):
    out = tmp_path / "r.json"
    assert cli_main(["evaluate", "--data", str(builtin_root), "--category", "gravel", "--shots", "4",
                     "--knn-backend", "ivf_pq", "--coreset", "none", "--json", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())["gravel"]
    assert res["knn_backend"] == "ivf_pq" and res["coreset"] == "none"
    assert res["image_auroc"] > 0.7
