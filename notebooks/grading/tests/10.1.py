"""10.1 Logical anomalies that get through. Public: the notebook's check. Hidden: from the verdicts."""
from otter.test_files import test_case

OK_FORMAT = False
name = "10.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(logical_caught, kinds, scores, model):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "10.1", logical_caught, kinds, scores, model.threshold)


@test_case(points=2, hidden=True)
def test_from_verdicts(logical_caught, kinds, preds):
    import math

    import numpy as np

    flagged = [p.verdict == "anomalous" for p, k in zip(preds, kinds) if k in ("missing", "swapped", "extra")]
    want = float(np.mean(flagged)) if flagged else 0.0
    assert logical_caught is not ... and math.isclose(float(logical_caught), want, abs_tol=1e-9), \
        "`logical_caught` is not the share of logical anomalies flagged"
