"""08.1 Mean and spread over seeds. Public: the notebook's check. Hidden: from the few-shot rows, seed
by seed (each seed's value averaged over categories first)."""
from otter.test_files import test_case

OK_FORMAT = False
name = "08.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(mean_1, std_1, means):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "08.1", mean_1, std_1, means)


@test_case(points=2, hidden=True)
def test_from_the_rows(mean_1, std_1, few, SHOTS):
    import math
    from collections import defaultdict

    import numpy as np

    per_seed = defaultdict(list)
    for r in few:
        if r["shots"] == SHOTS[0]:
            per_seed[r["seed"]].append(r["image_auroc"])
    values = [np.mean(v) for v in per_seed.values()]
    assert mean_1 is not ... and math.isclose(float(mean_1), np.mean(values), rel_tol=1e-6), \
        "`mean_1` is not the mean over seeds"
    want_std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    assert std_1 is not ... and math.isclose(float(std_1), want_std, rel_tol=1e-6, abs_tol=1e-9), \
        "`std_1` is not the sample standard deviation over seeds"
