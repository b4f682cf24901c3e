"""11.3 Random projection: my_project(x, dim, seed), x @ randn(D, dim) / sqrt(dim), x itself when D <= dim.
Public: the notebook's check. Hidden: other widths and seeds, the capstone's references disabled."""

import torch
from otter.test_files import test_case

OK_FORMAT = False

name = "11.3"
points = 3


def _rows(seed, n, d):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@test_case(points=1, hidden=False)
def test_check(my_project, reference, PROJECTION_DIM, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "11.3",
                   my_project, reference.bank.features, PROJECTION_DIM, SEED)


@test_case(points=2, hidden=True)
def test_other_widths_and_seeds_with_the_package_disabled(my_project, env):
    from patchcore_core.pipeline.coreset import random_projection
    from patchcore_core.teaching import grading

    cases = [(_rows(1301, 40, 200), 128, 0), (_rows(1302, 7, 33), 32, 123), (_rows(1303, 3, 16), 16, 1)]
    wants = [random_projection(x, dim, seed) for x, dim, seed in cases]
    with grading.references_disabled(env, grading.CAPSTONE_REFERENCES):
        gots = [my_project(x, dim, seed) for x, dim, seed in cases]
    for (x, dim, seed), got, want in zip(cases, gots, wants):
        assert tuple(got.shape) == tuple(want.shape), \
            f"shape {tuple(got.shape)} for {tuple(x.shape)} to {dim}"
        assert torch.allclose(got.float(), want.float(), rtol=1e-4, atol=1e-4), \
            f"values differ for {tuple(x.shape)} projected to {dim} with seed {seed}"
