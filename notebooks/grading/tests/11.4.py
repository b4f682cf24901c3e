"""11.4 Greedy k-center coreset: my_greedy_coreset(x, k, first), k indices in pick order.
Public: the notebook's check. Hidden: clusters, every point picked, the capstone's references disabled."""

import torch
from otter.test_files import test_case

OK_FORMAT = False

name = "11.4"
points = 4


def _points(seed, n, d):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _greedy_radii(x, k, first):
    """Covering radius after each of greedy's picks (the same run gives the same radii)."""
    from patchcore_core.pipeline.coreset import reference_greedy_coreset
    from patchcore_core.teaching.capstone import covering_radii

    return covering_radii(x, reference_greedy_coreset(x, k, projection_dim=x.shape[1], first=first).indices)


@test_case(points=1, hidden=False)
def test_check(my_greedy_coreset, reference, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "11.4", my_greedy_coreset, reference.bank.features, SEED)


@test_case(points=3, hidden=True)
def test_other_sets_with_the_package_disabled(my_greedy_coreset, env):
    from patchcore_core.teaching import grading
    from patchcore_core.teaching.capstone import covering_radii

    g = torch.Generator().manual_seed(1402)
    clusters = torch.cat([c + 0.05 * torch.randn(60, 2, generator=g, dtype=torch.float64)
                          for c in torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 9.0]], dtype=torch.float64)])
    cases = [(_points(1401, 500, 6), 60, 17), (clusters, 3, 0), (clusters, 20, 100),
             (_points(1403, 40, 2), 40, 39)]  # every point picked
    wants = [_greedy_radii(*case) for case in cases]
    with grading.references_disabled(env, grading.CAPSTONE_REFERENCES):
        gots = [torch.as_tensor(my_greedy_coreset(*case)).flatten() for case in cases]
    for (x, k, first), picks, want in zip(cases, gots, wants):
        assert len(picks) == k and int(picks[0]) == first, f"{len(x)} points, k = {k}: k picks, `first` first"
        assert torch.allclose(covering_radii(x, picks), want, rtol=1e-6, atol=1e-9), \
            f"{len(x)} points, k = {k}, first {first}: not greedy's picks"
