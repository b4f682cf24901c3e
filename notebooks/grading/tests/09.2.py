"""09.2 Memory. Public: the notebook's check. Hidden: from the tensors' sizes."""
from otter.test_files import test_case

OK_FORMAT = False
name = "09.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(padim_over_patchcore, padim, bank):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "09.2", padim_over_patchcore, padim, bank)


@test_case(points=2, hidden=True)
def test_from_sizes(padim_over_patchcore, padim, bank):
    import math

    padim_bytes = sum(padim[k].numel() * padim[k].element_size() for k in ("mean", "inv_cov"))
    assert padim_over_patchcore is not ... and math.isclose(float(padim_over_patchcore),
                                                            padim_bytes / bank.nbytes, rel_tol=0.02), \
        "`padim_over_patchcore` is not PaDiM's memory over PatchCore's"
