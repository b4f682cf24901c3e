"""03.1 Scores from a distance matrix. Public: the notebook's check. Hidden: matrices of other shapes
(one test patch, one bank patch) with the package's scoring disabled for the answer."""
from otter.test_files import test_case

OK_FORMAT = False
name = "03.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(my_patch_scores, my_image_score, model, bad, good, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "03.1", my_patch_scores, my_image_score, model,
                   [t.path for t in (bad[0], good[0])], SEED)


@test_case(points=2, hidden=True)
def test_other_matrices(my_patch_scores, my_image_score, env):
    import torch

    from patchcore_core.pipeline.scoring import image_scores
    from patchcore_core.teaching import grading

    g = torch.Generator().manual_seed(2204)
    cases = [(torch.rand(7, 5, generator=g),), (torch.rand(1, 9, generator=g),),
             (torch.rand(6, 1, generator=g),), (torch.rand(30, 40, generator=g) * 100,)]
    grading.matches(my_patch_scores, lambda d: d.min(dim=1).values, cases, env, what="my_patch_scores")
    grading.matches(my_image_score, lambda d: image_scores(d.min(dim=1).values[None])[0], cases, env,
                    what="my_image_score")
