"""00.1 How many defects are caught? Public: the notebook's check. Hidden: recomputed from the scores."""
from otter.test_files import test_case

OK_FORMAT = False
name = "00.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(caught, preds, labels):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "00.1", caught, preds, labels)


@test_case(points=2, hidden=True)
def test_against_the_threshold(caught, scores, labels, model):
    import numpy as np

    bad = np.asarray(labels, dtype=bool)
    want = float((np.asarray(scores)[bad] > model.threshold).mean())
    assert isinstance(caught, (int, float, np.number)), "`caught` is not a number"
    assert abs(float(caught) - want) < 1e-9, \
        "`caught` is not the share of defective images scored above the threshold"
