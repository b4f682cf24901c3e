"""06.2 Your folder's detection rate. Public: the notebook's check. Hidden: normalised score > 1."""
from otter.test_files import test_case

OK_FORMAT = False
name = "06.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(detected, preds, is_bad):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "06.2", detected, preds, is_bad)


@test_case(points=2, hidden=True)
def test_from_normalised_scores(detected, preds, is_bad):
    import math

    import numpy as np

    bad = np.asarray(is_bad, dtype=bool)
    if not bad.any():
        assert detected == 0 or math.isnan(detected), "with no defective images, `detected` should be 0"
        return
    want = float((np.array([p.normalised_score for p in preds])[bad] > 1).mean())
    assert detected is not ... and math.isclose(float(detected), want, rel_tol=1e-6), \
        "`detected` is not the share of defective images flagged"
