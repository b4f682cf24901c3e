"""06.1 Saved and loaded. Public: the notebook's check. Hidden: score lists where the largest difference
is negative or alone, and the loaded model's difference."""
from otter.test_files import test_case

OK_FORMAT = False
name = "06.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(max_score_difference, max_difference, model):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "06.1", max_score_difference, max_difference, model.threshold)


@test_case(points=2, hidden=True)
def test_other_scores(max_score_difference, max_difference, model, env):
    from patchcore_core.teaching import checks, grading

    p = checks._preds
    cases = [(p(3.0), p(7.5)), (p(1.0, 1.0, 1.0), p(1.0, 0.25, 1.0)), (p(2.0, -1.0), p(2.5, 1.0))]
    grading.matches(max_score_difference, checks.score_difference_reference, cases, env,
                    what="max_score_difference")
    assert max_difference is not ... and abs(float(max_difference)) <= 1e-4 * model.threshold, \
        "`max_difference`: the loaded model should score as the fitted one"
