"""05.2 Greedy against random. Public: the notebook's check. Hidden: from the sweep's AUPRO by key."""
from otter.test_files import test_case

OK_FORMAT = False
name = "05.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(greedy_gain, sampling_rows):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "05.2", greedy_gain, sampling_rows)


@test_case(points=2, hidden=True)
def test_at_the_smallest_ratio(greedy_gain, aupro, sampling_ratios):
    import math

    r = min(sampling_ratios)
    want = aupro["greedy", r] - aupro["random", r]
    assert greedy_gain is not ... and math.isclose(float(greedy_gain), want, rel_tol=1e-6, abs_tol=1e-9), \
        "`greedy_gain` is not greedy's AUPRO minus random's at the smallest ratio"
