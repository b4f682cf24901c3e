"""What the autograder's tests build on: references disabled while an answer runs, checks that compute
their own expected values, and hints for the common mistakes of each exercise."""

import numpy as np
import pytest
import torch

from patchcore_core.pipeline import coreset
from patchcore_core.teaching import checks, exercises, grading, toy
from patchcore_core.teaching.checks import CHECKS


def said(capsys) -> str:
    return capsys.readouterr().out.strip()


def own_greedy(points, k, first):
    picks = [first]
    nearest = np.linalg.norm(points - points[first], axis=1)
    for _ in range(k - 1):
        picks.append(int(nearest.argmax()))
        nearest = np.minimum(nearest, np.linalg.norm(points - points[picks[-1]], axis=1))
    return np.array(picks)


def test_references_raise_inside_and_come_back_after_wherever_they_are_bound():
    original = coreset.reference_greedy_coreset
    env = {"reference_greedy_coreset": original, "alias": original, "other": np.mean}
    with grading.references_disabled(env):
        for fn in (coreset.reference_greedy_coreset, toy.reference_greedy_coreset, env["alias"],
                   env["reference_greedy_coreset"]):
            with pytest.raises(grading.ReferenceDisabled, match="reference_greedy_coreset"):
                fn(torch.zeros(3, 2), 1)
        assert env["other"] is np.mean
    assert coreset.reference_greedy_coreset is original is toy.reference_greedy_coreset
    assert env["alias"] is original and env["reference_greedy_coreset"] is original


def test_references_come_back_when_the_answer_raises():
    original = toy.covering_radius_2d
    with pytest.raises(ZeroDivisionError), grading.references_disabled({}):
        raise ZeroDivisionError
    assert toy.covering_radius_2d is original


def test_every_reference_named_exists():
    assert len(grading._references(grading.REFERENCES)) == len(grading.REFERENCES)


def wrapped_greedy(points, k, first):  # an answer that only calls the package
    from patchcore_core.pipeline.coreset import reference_greedy_coreset

    x = torch.from_numpy(points)
    return reference_greedy_coreset(x, k, projection_dim=points.shape[1], first=first).indices


def test_a_hidden_test_fails_an_answer_that_wraps_the_reference_and_passes_one_written_from_numpy():
    pts = toy.toy_points(80, seed=3)
    cases = [(pts, 6, 0), (pts, 3, 10)]
    grading.matches(own_greedy, checks.greedy_reference, cases, what="my_greedy_kcenter")
    with pytest.raises(AssertionError, match="on hidden case 1.*the grader disabled"):
        grading.matches(wrapped_greedy, checks.greedy_reference, cases, what="my_greedy_kcenter")
    # Through the notebook's globals too: the answer calls the name the setup cell imported.
    env = {"reference_greedy_coreset": coreset.reference_greedy_coreset, "torch": torch}
    exec("def my_greedy_kcenter(p, k, f):\n"
         "    x = torch.from_numpy(p)\n"
         "    return reference_greedy_coreset(x, k, projection_dim=2, first=f).indices", env)
    with pytest.raises(AssertionError, match="disabled"):
        grading.matches(env["my_greedy_kcenter"], checks.greedy_reference, cases, env, what="the answer")


def test_the_notebook_check_also_tells_a_wrapped_reference_apart(capsys):
    pts = toy.toy_points(100, seed=0)
    assert CHECKS["02.1"](own_greedy, pts, 0, 0).ok is True
    assert CHECKS["02.1"](wrapped_greedy, pts, 0, 0).ok is False
    assert "the grader disabled patchcore_core.pipeline.coreset.reference_greedy_coreset" in said(capsys)


def test_expect_fails_with_the_checks_hint_and_no_expected_value(capsys):
    preds = [type("P", (), {"verdict": v})() for v in ("anomalous", "normal", "anomalous", "normal")]
    labels = [True, True, False, False]
    grading.expect(exercises.check_exercise, "00.1", 0.5, preds, labels)
    with pytest.raises(AssertionError) as raised:
        grading.expect(exercises.check_exercise, "00.1", 0.25, preds, labels)
    assert "too low" in str(raised.value) and "0.5" not in str(raised.value)
    assert said(capsys) == ""  # quiet: otter shows the message


def last_pick_only(points, k, first):
    picks = [first]
    for _ in range(k - 1):
        d = np.linalg.norm(points - points[picks[-1]], axis=1)
        d[picks] = -1
        picks.append(int(d.argmax()))
    return np.array(picks)


def test_a_wrong_greedy_gets_the_radius_it_reaches_the_first_pick_that_differs_and_its_mistake(capsys):
    pts = toy.toy_points(400, seed=0)
    assert CHECKS["02.1"](last_pick_only, pts, 0, 0).ok is False
    line = said(capsys)
    assert "reaches covering radius" in line and "the greedy reference" in line
    assert "is the first that differs" in line and "LAST pick only" in line
    assert "largest difference" not in line


def test_a_covering_radius_with_a_mean_gets_its_own_hint(capsys):
    pts = toy.toy_points(100, seed=0)
    mean_radius = lambda p, c: np.linalg.norm(p[:, None] - p[np.asarray(c)][None], axis=2).min(1).mean()  # noqa: E731
    assert CHECKS["02.2"](mean_radius, pts, np.arange(10), 0).ok is False
    assert "the mean distance to the nearest centre" in said(capsys)


def test_recall_by_exact_equality_fails_on_float_rounding(capsys):
    assert CHECKS["07.3"](lambda a, e: float((a == e).float().mean()), 0).ok is False
    assert "float rounding" in said(capsys)
    assert CHECKS["07.3"](lambda a, e: float((a <= e * (1 + 1e-4) + 1e-6).float().mean()), 0).ok is True


def test_a_constant_eq7_weight_fails():
    assert CHECKS["03.2"](lambda d: 1.0, []).ok is False
    assert CHECKS["03.2"](lambda d: 1 - torch.softmax(d, 0)[0], []).ok is True


def test_saved_and_loaded_needs_the_function_not_just_zero():
    assert CHECKS["06.1"](lambda a, b: 0.0, 0.0, 1.0).ok is False
    right = lambda a, b: max(abs(x.score - y.score) for x, y in zip(a, b))  # noqa: E731
    assert CHECKS["06.1"](right, 0.0, 1.0).ok is True


def test_combined_z_scores_name_the_mistake(capsys):
    a, b = np.array([72.0, 95.0, 68.0]), np.array([12.5, 15.0, 16.0])
    assert CHECKS["08.2"](((a - 70) / 5 + (b - 12) / 1) / 2, a, b).ok is True
    assert CHECKS["08.2"]((a + b) / 2, a, b).ok is False
    assert "averages the raw scores" in said(capsys)


def test_the_deploy_checks_name_the_usual_slips(capsys):
    torch_scores = np.array([10.0, 20.0, 40.0])
    fp32 = torch_scores * np.array([1 + 1e-7, 1 - 3e-7, 1 + 2e-7])
    relative = np.abs(fp32 - torch_scores) / torch_scores
    assert CHECKS["12.1"](float(relative.max()), torch_scores, fp32).ok is True
    assert CHECKS["12.1"](float(np.abs(fp32 - torch_scores).max()), torch_scores, fp32).ok is False
    assert "ABSOLUTE" in said(capsys)
    assert CHECKS["12.1"](float(relative.mean()), torch_scores, fp32).ok is False
    assert "mean relative" in said(capsys)
    int8 = np.array([1.5, 2.7, 2.9, 4.2])  # by its own threshold (2.8) no flip, by PyTorch's (2.5) one
    assert CHECKS["12.2"](0, [1.0, 2.0, 3.0, 4.0], int8, 2.5, 2.8).ok is True
    assert CHECKS["12.2"](1, [1.0, 2.0, 3.0, 4.0], int8, 2.5, 2.8).ok is False
    assert "PyTorch's threshold" in said(capsys)


def test_a_number_at_a_known_mistake_gets_its_hint(capsys):
    verdict = exercises.check_number(0.5, 0.25, what="x", mistakes={"you divided by all images": 0.5})
    assert verdict.ok is False and said(capsys) == "not quite: x = 0.5 is too high: you divided by all images"


def stub(*args):
    raise NotImplementedError


def test_an_open_exercise_says_not_answered_yet_and_never_raises(capsys):
    from patchcore_core.teaching.shards import toy_shards

    pts = toy.toy_points(60, seed=0)
    shard_pts, shard_of = toy_shards(60, n_shards=3, seed=0)
    a, b = np.array([72.0, 95.0, 68.0]), np.array([12.5, 15.0, 16.0])
    plate = np.full((32, 32, 3), 128, np.uint8)
    open_exercises = [("02.1", stub, pts, 0, 0), ("02.2", stub, pts, [0, 1], 0), ("03.2", stub, []),
                      ("06.1", stub, ..., 1.0), ("07.1", stub, shard_pts, shard_of, np.zeros(2)),
                      ("07.3", stub, 0), ("08.2", ..., a, b), ("10.2", stub, [plate]),
                      ("06.2", ..., [], np.zeros(0, bool)), ("12.1", ..., a, b),
                      ("12.2", None, a, b, 70.0, 14.0)]
    for exercise, *args in open_exercises:
        assert CHECKS[exercise](*args).ok is None, exercise
    lines = said(capsys).splitlines()
    assert len(lines) == len(open_exercises) + 1, lines  # 06.1 has two answers
    assert all(line.startswith("not answered yet") for line in lines), lines
