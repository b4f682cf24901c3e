"""11.3 Random projection: my_project(x, dim, seed), x @ randn(D, dim) / sqrt(dim), x itself when D <= dim."""

import torch
from otter.test_files import test_case

OK_FORMAT = False

name = "11.3"
points = 3


def _rows(seed, n, d):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@test_case(points=1, hidden=False)
def test_the_seeded_gaussian_projection(my_project):
    from patchcore_core.pipeline.coreset import random_projection
    from patchcore_core.teaching.capstone import hint_project

    x = _rows(13, 30, 64)
    got = my_project(x, 8, 5)
    assert tuple(got.shape) == (30, 8), "[N, D] -> [N, dim]"
    assert torch.allclose(got, random_projection(x, 8, 5), rtol=1e-4, atol=1e-4), \
        hint_project(my_project, x, 8, 5)
    narrow = _rows(14, 5, 4)
    assert torch.equal(my_project(narrow, 8, 5), narrow), "features no wider than dim come back as they are"


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
