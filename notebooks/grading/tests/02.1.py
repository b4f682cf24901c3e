"""02.1 Greedy k-center. Public: the notebook's check. Hidden: other point sets (3-D, clustered, k = 1,
k = n) with every reference coreset disabled for the answer."""
from otter.test_files import test_case

OK_FORMAT = False
name = "02.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(my_greedy_kcenter, pts, trace, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "02.1", my_greedy_kcenter, pts, trace.picks[0], SEED)


@test_case(points=2, hidden=True)
def test_other_point_sets(my_greedy_kcenter, env):
    import numpy as np

    from patchcore_core.teaching import checks, exercises, grading

    rng = np.random.default_rng(2202)
    clusters = np.concatenate([rng.normal(c, 0.05, size=(15, 2)) for c in ([0, 0], [3, 0], [0, 5])])
    line = np.linspace(0, 1, 9)[:, None] * np.array([[1.0, 2.0]])
    cases = [(rng.uniform(size=(50, 3)), 8, 13), (clusters, 6, 44), (rng.normal(size=(20, 4)), 1, 5),
             (line, 9, 4)]
    grading.matches(my_greedy_kcenter, checks.greedy_reference, cases, env, what="my_greedy_kcenter",
                    mistakes=checks.GREEDY_MISTAKES,
                    describe=lambda case, got, want: exercises.describe_coreset(case[0], got, want))
