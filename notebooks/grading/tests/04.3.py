"""04.3 PRO at one threshold. Public: the notebook's check. Hidden: regions that touch only at a corner
(8-connectivity), an image without defects, ties at the threshold; pro_curve disabled for the answer."""
from otter.test_files import test_case

OK_FORMAT = False
name = "04.3"
points = 3


@test_case(points=1, hidden=False)
def test_check(my_pro_at, masks, maps, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "04.3", my_pro_at, masks, maps, SEED)


@test_case(points=2, hidden=True)
def test_other_regions(my_pro_at, env):
    import numpy as np

    from patchcore_core.teaching import checks, grading

    rng = np.random.default_rng(2206)
    masks = np.zeros((3, 10, 10), bool)
    masks[0, 1:3, 1:3] = masks[0, 3:5, 3:5] = True  # touch at a corner: one region with 8-connectivity
    masks[0, 7:9, 1:9] = True
    masks[2, 4:6, 4:6] = True                       # image 1 has no defect at all
    maps = np.round(rng.random((3, 10, 10)) + masks * 0.4, 2).astype(np.float32)  # ties
    cases = [(masks, maps, 0.8), (masks, maps, 1.0), (masks, maps, float(maps[0, 1, 1]))]
    grading.matches(my_pro_at, checks.pro_at_reference, cases, env, what="my_pro_at",
                    mistakes=checks.PRO_MISTAKES)
