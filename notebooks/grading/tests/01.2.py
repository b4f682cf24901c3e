"""01.2 Patches per image. Public: the notebook's check. Hidden: against the fitted model's bank."""
from otter.test_files import test_case

OK_FORMAT = False
name = "01.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(patches_per_image, numbers_per_patch, model, z):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "01.2", patches_per_image, numbers_per_patch, model, z)


@test_case(points=2, hidden=True)
def test_against_the_bank(patches_per_image, numbers_per_patch, model):
    h, w = model.grid
    assert patches_per_image == h * w, "`patches_per_image` is not the number of cells of the model's grid"
    assert numbers_per_patch == model.bank.features.shape[1], \
        "`numbers_per_patch` is not the width of the memory bank's rows"
