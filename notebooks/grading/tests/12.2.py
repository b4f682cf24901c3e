"""12.2 Verdicts int8 flips, each model judged by its own threshold. Public: the notebook's check. Hidden:
recomputed from the scores and both thresholds."""
from otter.test_files import test_case

OK_FORMAT = False

name = "12.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(flips, torch_scores, int8_scores, model, int8):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "12.2",
                   flips, torch_scores, int8_scores, model.threshold, int8.threshold)


@test_case(points=2, hidden=True)
def test_flips_uses_each_models_own_threshold(flips, env):
    import numpy as np

    torch_scores, int8_scores = np.asarray(env["torch_scores"]), np.asarray(env["int8_scores"])
    own = int(((torch_scores > env["model"].threshold) != (int8_scores > env["int8"].threshold)).sum())
    assert flips == own
