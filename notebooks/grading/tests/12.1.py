"""12.1 The parity check by hand: the largest relative score difference of fp32 and PyTorch. Public: the
notebook's check. Hidden: recomputed from the scores."""
from otter.test_files import test_case

OK_FORMAT = False

name = "12.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(largest_relative, torch_scores, fp32_scores):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "12.1", largest_relative, torch_scores, fp32_scores)


@test_case(points=2, hidden=True)
def test_largest_relative_matches_the_scores(largest_relative, env):
    import numpy as np

    torch_scores, fp32_scores = np.asarray(env["torch_scores"]), np.asarray(env["fp32_scores"])
    expected = np.max(np.abs(fp32_scores - torch_scores) / np.abs(torch_scores))
    # the absolute difference alone, or the mean, are the usual slips
    assert np.isclose(largest_relative, expected, rtol=1e-3, atol=1e-12)
