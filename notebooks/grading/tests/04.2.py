"""04.2 F1 at the threshold. Public: the notebook's check. Hidden: sklearn's f1_score."""
from otter.test_files import test_case

OK_FORMAT = False
name = "04.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(f1_at_thr, labels, scores, thr):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "04.2", f1_at_thr, labels, scores, thr)


@test_case(points=2, hidden=True)
def test_f1_score(f1_at_thr, labels, scores, model):
    import math

    from sklearn.metrics import f1_score

    want = f1_score(labels, scores > model.threshold)
    assert f1_at_thr is not ... and math.isclose(float(f1_at_thr), want, rel_tol=1e-6, abs_tol=1e-12), \
        "`f1_at_thr` is not the F1 score of the predictions at the calibrated threshold"
