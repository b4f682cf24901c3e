"""00.2 A training image. Public: the notebook's check. Hidden: score / threshold, predicted again."""
from otter.test_files import test_case

OK_FORMAT = False
name = "00.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(train_score, model, cat):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "00.2", train_score, model, cat.train[0])


@test_case(points=2, hidden=True)
def test_score_over_threshold(train_score, model, cat):
    import math

    pred = model.predict([cat.train[0]])[0]
    assert not isinstance(train_score, type(...)) and train_score is not None, "`train_score` is not set"
    assert math.isclose(float(train_score), pred.score / model.threshold, rel_tol=1e-4), \
        "`train_score` is not cat.train[0]'s score divided by the threshold"
