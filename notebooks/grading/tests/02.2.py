"""02.2 The covering radius. Public: the notebook's check. Hidden: 3-D points, one centre, every point
a centre, with the package's covering radius disabled for the answer."""
from otter.test_files import test_case

OK_FORMAT = False
name = "02.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(my_covering_radius, pts, trace, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "02.2", my_covering_radius, pts, trace.picks, SEED)


@test_case(points=2, hidden=True)
def test_other_centres(my_covering_radius, env):
    import numpy as np

    from patchcore_core.teaching import checks, grading

    rng = np.random.default_rng(2203)
    p = rng.normal(size=(40, 3))
    cases = [(p, np.array([7])), (p, np.arange(40)), (p, rng.choice(40, 5, replace=False)),
             (rng.uniform(size=(30, 2)) * 10, [0, 29])]
    grading.matches(my_covering_radius, checks.radius_reference, cases, env, what="my_covering_radius",
                    mistakes=checks.RADIUS_MISTAKES)
