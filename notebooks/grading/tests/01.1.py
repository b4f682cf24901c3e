"""01.1 3x3 aggregation. Public: the notebook's check. Hidden: maps of other shapes (1x1, 2x7, one
channel, float64), with the package's local_aggregate disabled for the answer."""
from otter.test_files import test_case

OK_FORMAT = False
name = "01.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(my_local_aggregate, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "01.1", my_local_aggregate, SEED)


@test_case(points=2, hidden=True)
def test_other_shapes(my_local_aggregate, env):
    import torch

    from patchcore_core.pipeline.features import local_aggregate
    from patchcore_core.teaching import grading

    g = torch.Generator().manual_seed(2201)
    cases = [(torch.randn(1, 1, 1, 1, generator=g),), (torch.randn(3, 2, 2, 7, generator=g),),
             (torch.randn(1, 5, 8, 3, generator=g, dtype=torch.float64),), (torch.ones(1, 1, 4, 4),)]
    grading.matches(my_local_aggregate, lambda x: local_aggregate(x, 3), cases, env,
                    what="my_local_aggregate")
