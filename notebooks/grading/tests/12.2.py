from otter.test_files import test_case

OK_FORMAT = False

name = "12.2"
points = 3


@test_case(points=1, hidden=False)
def test_flips_is_a_count(flips, test):
    assert int(flips) == flips and 0 <= flips <= len(test), \
        "flips should be a whole number between 0 and the number of test images"


@test_case(points=2, hidden=True)
def test_flips_uses_each_models_own_threshold(flips, env):
    import numpy as np

    torch_scores, int8_scores = np.asarray(env["torch_scores"]), np.asarray(env["int8_scores"])
    own = int(((torch_scores > env["model"].threshold) != (int8_scores > env["int8"].threshold)).sum())
    assert flips == own
