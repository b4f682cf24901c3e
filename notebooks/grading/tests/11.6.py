"""11.6 Image score: my_image_scores(patch_scores), each image's largest patch score.
Public: the notebook's check. Hidden: one anomalous patch at the border, the capstone's references
disabled."""

import torch
from otter.test_files import test_case

OK_FORMAT = False

name = "11.6"
points = 2


@test_case(points=1, hidden=False)
def test_check(my_image_scores, reference, test_paths, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "11.6", my_image_scores, reference, test_paths, SEED)


@test_case(points=1, hidden=True)
def test_a_small_defect_with_the_package_disabled(my_image_scores, env):
    from patchcore_core.pipeline.scoring import image_scores
    from patchcore_core.teaching import grading

    patch = torch.rand(5, 28, 28, generator=torch.Generator().manual_seed(1601))
    patch[2, 3, 27] = 9.0  # one anomalous patch at the border, in one image
    cases = [patch, torch.rand(1, 1, 9, generator=torch.Generator().manual_seed(1602))]
    wants = [image_scores(p) for p in cases]
    with grading.references_disabled(env, grading.CAPSTONE_REFERENCES):
        gots = [torch.as_tensor(my_image_scores(p)).flatten() for p in cases]
    for p, got, want in zip(cases, gots, wants):
        assert got.shape == want.shape and torch.allclose(got, want), \
            f"patch scores of shape {tuple(p.shape)}"
