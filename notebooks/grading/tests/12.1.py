from otter.test_files import test_case

OK_FORMAT = False

name = "12.1"
points = 3


@test_case(points=1, hidden=False)
def test_largest_relative_is_a_small_number(largest_relative):
    import math

    assert isinstance(largest_relative, (int, float)) and math.isfinite(largest_relative), \
        "largest_relative should be one finite number (a float), not an array or ..."
    assert 0 <= largest_relative < 1, \
        "a relative difference between two parity-checked exports is far below 1"


@test_case(points=2, hidden=True)
def test_largest_relative_matches_the_scores(largest_relative, env):
    import numpy as np

    torch_scores, fp32_scores = np.asarray(env["torch_scores"]), np.asarray(env["fp32_scores"])
    expected = np.max(np.abs(fp32_scores - torch_scores) / np.abs(torch_scores))
    # the absolute difference alone, or the mean, are the usual slips
    assert np.isclose(largest_relative, expected, rtol=1e-3, atol=1e-12)
