"""11.7 Anomaly map: my_anomaly_maps(patch_scores, size, sigma), bilinear upsampling and a Gaussian.
Public: the notebook's check. Hidden: other sizes and sigmas, the capstone's references disabled."""

import torch
from otter.test_files import test_case

OK_FORMAT = False

name = "11.7"
points = 3


def _scores(seed, *shape):
    return 5 * torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@test_case(points=1, hidden=False)
def test_check(my_anomaly_maps, reference, test_paths, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "11.7", my_anomaly_maps, reference, test_paths, SEED)


@test_case(points=2, hidden=True)
def test_other_sizes_and_sigmas_with_the_package_disabled(my_anomaly_maps, env):
    from patchcore_core.pipeline.scoring import anomaly_map
    from patchcore_core.teaching import grading

    cases = [(_scores(1701, 3, 28, 28), 224, 4.0), (_scores(1702, 1, 5, 8), 64, 1.5),
             (_scores(1703, 2, 14, 14), 112, 6.0)]
    wants = [anomaly_map(p, size, sigma) for p, size, sigma in cases]
    with grading.references_disabled(env, grading.CAPSTONE_REFERENCES):
        gots = [my_anomaly_maps(p, size, sigma) for p, size, sigma in cases]
    for (p, size, sigma), got, want in zip(cases, gots, wants):
        assert tuple(got.shape) == tuple(want.shape), \
            f"shape {tuple(got.shape)} for {tuple(p.shape)} to {size}"
        assert torch.allclose(got.float(), want, rtol=1e-4, atol=1e-4), \
            f"{tuple(p.shape)} to {size} x {size} with sigma {sigma}"
