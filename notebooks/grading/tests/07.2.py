"""07.2 The guarantee. Public: the notebook's check. Hidden: max_s r_s + r_m from the run's radii."""
from otter.test_files import test_case

OK_FORMAT = False
name = "07.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(bound, run):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "07.2", bound, run)


@test_case(points=2, hidden=True)
def test_from_the_radii(bound, run):
    import math

    want = max(run.shard_radii) + run.merge_radius
    assert bound is not ... and math.isclose(float(bound), want, rel_tol=1e-6), \
        "`bound` is not the worst shard radius plus the merge radius"
    assert float(bound) >= run.radius - 1e-9, "`bound` lies below the radius measured"
