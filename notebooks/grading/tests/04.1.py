"""04.1 Errors at the calibrated threshold. Public: the notebook's check. Hidden: sklearn's confusion
matrix."""
from otter.test_files import test_case

OK_FORMAT = False
name = "04.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(fp, fn, labels, scores, thr):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "04.1", fp, fn, labels, scores, thr)


@test_case(points=2, hidden=True)
def test_confusion_matrix(fp, fn, labels, scores, model):
    from sklearn.metrics import confusion_matrix

    (_, want_fp), (want_fn, _) = confusion_matrix(labels, scores > model.threshold, labels=[0, 1])
    assert fp == want_fp, "`fp` is not the number of good images scored above the threshold"
    assert fn == want_fn, "`fn` is not the number of defective images at or below the threshold"
