"""09.1 PaDiM's score at one position. Public: the notebook's check. Hidden: a Gaussian fitted on other
random features (other dimension); padim_scores disabled for the answer."""
from otter.test_files import test_case

OK_FORMAT = False
name = "09.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(my_mahalanobis, padim, test_feats, model):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "09.1", my_mahalanobis, padim, test_feats, model.grid)


@test_case(points=2, hidden=True)
def test_other_gaussians(my_mahalanobis, env):
    import torch

    from patchcore_core.teaching import baselines, grading

    g = torch.Generator().manual_seed(2208)
    cases, want = [], {}
    for n, d in [(30, 4), (12, 7)]:
        fitted = baselines.padim_fit(torch.randn(n, 1, 1, d, generator=g))
        test = torch.randn(9, 1, 1, d, generator=g) * 2
        case = (test[:, 0, 0].float(), fitted["mean"][0, 0], fitted["inv_cov"][0, 0])
        want[id(case[0])] = baselines.padim_scores(fitted, test)[1][:, 0, 0]
        cases.append(case)
    grading.matches(my_mahalanobis, lambda x, mu, ic: want[id(x)], cases, env, what="my_mahalanobis",
                    rtol=1e-3, atol=1e-3)
