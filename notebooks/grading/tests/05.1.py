"""05.1 Memory against ratio. Public: the notebook's check. Hidden: from the sweep's rows, by ratio."""
from otter.test_files import test_case

OK_FORMAT = False
name = "05.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(bank_growth, coreset_rows):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "05.1", bank_growth, coreset_rows)


@test_case(points=2, hidden=True)
def test_by_ratio(bank_growth, coreset_rows):
    import math

    by_ratio = sorted(coreset_rows, key=lambda r: r["ratio"])
    want = by_ratio[-1]["memory_bank_size"] / by_ratio[0]["memory_bank_size"]
    assert bank_growth is not ... and math.isclose(float(bank_growth), want, rel_tol=0.02), \
        "`bank_growth` is not the largest ratio's bank size over the smallest's"
