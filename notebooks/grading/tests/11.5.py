"""11.5 Nearest-neighbour patch scores: my_patch_scores(queries, bank), L2 distance to the nearest row.
Public: the notebook's check. Hidden: queries in the bank, a one-row bank, 1024 dimensions, the capstone's
references disabled."""

import torch
from otter.test_files import test_case

OK_FORMAT = False

name = "11.5"
points = 3


def _rows(seed, n, d, scale=1.0):
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@test_case(points=1, hidden=False)
def test_check(my_patch_scores, reference, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "11.5", my_patch_scores, reference.bank.features, SEED)


@test_case(points=2, hidden=True)
def test_other_banks_with_the_package_disabled(my_patch_scores, env):
    from patchcore_core.pipeline.memory_bank import knn_search
    from patchcore_core.teaching import grading

    bank = _rows(1501, 300, 64, 10.0)
    inside = torch.cat([bank[:5], _rows(1502, 20, 64, 10.0)])  # 5 queries are bank rows: score 0
    cases = [(inside, bank), (_rows(1503, 50, 3), _rows(1504, 1, 3)),
             (_rows(1505, 200, 1024), _rows(1506, 700, 1024))]
    wants = [knn_search(q, b, 1)[0][:, 0] for q, b in cases]
    with grading.references_disabled(env, grading.CAPSTONE_REFERENCES):
        gots = [torch.as_tensor(my_patch_scores(q, b)).flatten().float() for q, b in cases]
    for (q, b), got, want in zip(cases, gots, wants):
        assert torch.isfinite(got).all(), f"{tuple(q.shape)} against {tuple(b.shape)}: NaN or inf scores"
        assert torch.allclose(got, want, rtol=1e-3, atol=1e-2), f"{tuple(q.shape)} against {tuple(b.shape)}"
