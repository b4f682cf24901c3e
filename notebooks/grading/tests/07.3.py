"""07.3 Recall@1. Public: the notebook's check (float rounding included). Hidden: answers a rounding
below the exact distance, all missed, a single query; recall_at_1 disabled for the answer."""
from otter.test_files import test_case

OK_FORMAT = False
name = "07.3"
points = 3


@test_case(points=1, hidden=False)
def test_check(my_recall, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "07.3", my_recall, SEED)


@test_case(points=2, hidden=True)
def test_other_answers(my_recall, env):
    import torch

    from patchcore_core.evaluation.search import recall_at_1
    from patchcore_core.teaching import grading

    g = torch.Generator().manual_seed(2207)
    exact = torch.rand(50, generator=g) + 0.5
    cases = [(exact * (1 - 1e-7), exact), (exact * 3, exact), (exact[:1], exact[:1]),
             (torch.where(torch.arange(50) % 4 == 0, exact * (1 + 5e-5), exact * 1.01), exact)]
    grading.matches(my_recall, recall_at_1, cases, env, what="my_recall")
