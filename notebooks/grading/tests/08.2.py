"""08.2 Combining two backbones. Public: the notebook's check. Hidden: the combined scores, element by
element, as an array of three."""
from otter.test_files import test_case

OK_FORMAT = False
name = "08.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(z, a, b):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "08.2", z, a, b)


@test_case(points=2, hidden=True)
def test_combined(z):
    import numpy as np

    a, b = np.array([72.0, 95.0, 68.0]), np.array([12.5, 15.0, 16.0])
    assert isinstance(z, np.ndarray) and z.shape == (3,), "`z` should be an array of three scores"
    assert np.allclose(z, ((a - 70) / 5 + (b - 12) / 1) / 2), "`z` is not the mean of the two z-scores"
