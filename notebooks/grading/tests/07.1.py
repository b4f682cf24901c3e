"""07.1 Merge the shards' answers. Public: the notebook's check. Hidden: three-way ties, one shard, other
queries; the cluster's merge disabled for the answer."""
from otter.test_files import test_case

OK_FORMAT = False
name = "07.1"
points = 3


@test_case(points=1, hidden=False)
def test_check(my_merge, pts, shard_of, query):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "07.1", my_merge, pts, shard_of, query)


@test_case(points=2, hidden=True)
def test_other_answers(my_merge, pts, shard_of, env):
    import numpy as np

    from patchcore_core.teaching import grading
    from patchcore_core.teaching.shards import merged_nearest, shard_nearest

    cases = [([(0.7, 9), (0.7, 2), (0.7, 5)],), ([(1.5, 30)],), ([(0.1, 8), (0.4, 1), (0.1, 50)],)]
    cases += [(shard_nearest(pts, shard_of, np.array(q)),) for q in ([0.0, 0.0], [-1.0, 2.5])]
    grading.matches(my_merge, merged_nearest, cases, env, what="my_merge")
