"""The notebooks' exercise checks: "correct", a specific hint, or "not answered yet", never an exception."""

import numpy as np
import pytest
import torch

from patchcore_core.teaching import exercises


def said(capsys) -> str:
    return capsys.readouterr().out.strip()


@pytest.mark.parametrize("unanswered", [..., None])
def test_an_unanswered_number_says_so(unanswered, capsys):
    assert exercises.check_number(unanswered, 3.0, what="`n_caught`").ok is None
    assert said(capsys) == "not answered yet: set `n_caught`"


def test_a_number_is_correct_within_tolerance_and_otherwise_too_high_or_low(capsys):
    assert exercises.check_number(np.float32(0.251), 0.25, rel=0.01).ok is True
    assert said(capsys) == "correct"
    assert exercises.check_number(torch.tensor(0.5), 0.25, what="the rate",
                               hint="divide by the defects only").ok is False
    assert said(capsys) == "not quite: the rate = 0.5 is too high. divide by the defects only"
    assert exercises.check_number(0.1, 0.25).ok is False and "too low" in said(capsys)
    assert exercises.check_number("many", 0.25).ok is False and "should be a number, not str" in said(capsys)


def test_a_choice_gets_the_hint_of_the_wrong_option(capsys):
    hints = {"lower": "fewer images cover less: normal patches find farther matches"}
    assert exercises.check_choice(" Higher", "higher", hints).ok is True and said(capsys) == "correct"
    assert exercises.check_choice("lower", "higher", hints).ok is False
    assert said(capsys) == "not quite: fewer images cover less: normal patches find farther matches"
    assert exercises.check_choice("sideways", "higher", hints).ok is False
    assert "should be one of ['higher', 'lower']" in said(capsys)
    assert exercises.check_choice(..., "higher", hints).ok is None
    assert said(capsys).startswith("not answered yet")


def _max(d):
    return np.asarray(d).max(axis=1)


def test_a_function_is_compared_with_the_reference_on_every_case(capsys):
    cases = [(np.array([[1.0, 2.0], [0.5, 0.1]]),), (np.arange(6.0).reshape(2, 3),)]
    result = exercises.check_function(lambda d: torch.from_numpy(d).amax(1), _max, cases, what="score")
    assert result.ok is True
    assert said(capsys) == "correct"
    # Right on the first case, wrong on the second: the hint names the case and the difference.
    first_two_columns = lambda d: d[:, :2].max(1)  # noqa: E731
    verdict = exercises.check_function(first_two_columns, _max, cases, what="score", hint="all columns?")
    assert verdict.ok is False
    # ... without giving the expected values away
    assert said(capsys) == ("not quite: on case 2, score differs at 2 of 2 values (the first at index 0). "
                            "all columns?")
    assert exercises.check_function(lambda d: d.max(), _max, cases, what="score").ok is False
    assert "returned shape (), expected (2,)" in said(capsys)


def test_a_stub_a_none_and_a_crash_never_raise(capsys):
    def stub(d):
        raise NotImplementedError

    cases = [(np.ones((2, 2)),)]
    assert exercises.check_function(stub, _max, cases, what="score").ok is None
    assert said(capsys).startswith("not answered yet: score still raises NotImplementedError")
    assert exercises.check_function(lambda d: None, _max, cases, what="score").ok is None
    assert said(capsys) == "not answered yet: score returns None: return your result"
    assert exercises.check_function(lambda d: d[5], _max, cases, what="score").ok is False
    assert said(capsys).startswith("not quite: score raised IndexError on case 1")
    assert exercises.check_function(..., _max, cases, what="score").ok is None


def test_a_verdict_is_truthy_only_when_correct_and_shows_nothing_more(capsys):
    assert exercises.check_number(1.0, 1.0) and not exercises.check_number(2.0, 1.0)
    assert not exercises.check_number(..., 1.0)
    verdict = exercises.check_number(2.0, 1.0, what="x")
    assert verdict.message == "not quite: x = 2 is too high." == said(capsys).splitlines()[-1]
    verdict._ipython_display_()  # what IPython calls instead of showing the repr
    assert said(capsys) == ""


def test_indices_can_be_compared_as_a_set(capsys):
    cases = [(np.array([3, 1, 2]),)]
    assert exercises.check_function(lambda x: x[::-1], lambda x: x, cases, same_set=True).ok is True
    assert exercises.check_function(lambda x: x[::-1], lambda x: x, cases).ok is False
