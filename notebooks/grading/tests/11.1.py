"""11.1 Local aggregation: my_aggregate(fmap), the 3x3 mean of every channel, zeros outside the map.
Public: the notebook's check. Hidden: other shapes and a constant map, the capstone's references disabled."""

import torch
from otter.test_files import test_case

OK_FORMAT = False

name = "11.1"
points = 3


def _maps(seed, *shapes):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for shape in shapes]


@test_case(points=1, hidden=False)
def test_check(my_aggregate, train_maps, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "11.1", my_aggregate, train_maps, SEED)


@test_case(points=2, hidden=True)
def test_other_shapes_with_the_package_disabled(my_aggregate, env):
    from patchcore_core.pipeline.features import local_aggregate
    from patchcore_core.teaching import grading

    cases = _maps(1101, (3, 7, 9, 5), (1, 1, 3, 3), (2, 16, 12, 2))
    cases.append(torch.ones(1, 2, 4, 4))  # a constant map: 1 inside, 4/9 at the corners, 6/9 at the edges
    wants = [local_aggregate(fmap, 3) for fmap in cases]
    with grading.references_disabled(env, grading.CAPSTONE_REFERENCES):
        gots = [my_aggregate(fmap) for fmap in cases]
    for fmap, got, want in zip(cases, gots, wants):
        assert tuple(got.shape) == tuple(want.shape), \
            f"shape {tuple(got.shape)} for a map of {tuple(fmap.shape)}"
        assert torch.allclose(got.float(), want, rtol=1e-4, atol=1e-5), \
            f"values differ on a map of shape {tuple(fmap.shape)}"
