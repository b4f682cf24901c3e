"""03.2 Eq. 7's weight. Public: the notebook's check. Hidden: distances at other scales and of other
lengths (b = 2 to 5), where a constant weight is far off."""
from otter.test_files import test_case

OK_FORMAT = False
name = "03.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(my_eq7_weight, rows):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "03.2", my_eq7_weight, rows)


@test_case(points=2, hidden=True)
def test_other_distances(my_eq7_weight, env):
    import torch

    from patchcore_core.teaching import checks, grading

    g = torch.Generator().manual_seed(2205)
    cases = [(torch.rand(b, generator=g, dtype=torch.float64).sort().values * s,)
             for b, s in [(2, 0.1), (3, 1.0), (4, 3.0), (5, 0.5)]]
    cases.append((torch.tensor([2.0, 2.0, 2.0, 2.0], dtype=torch.float64),))
    grading.matches(my_eq7_weight, checks.eq7_weight, cases, env, what="my_eq7_weight")
