"""The notebooks' concept quizzes: a letter gets "correct", "not quite" or "not answered yet", then the
explanation of the option chosen; never an exception. The grader's test files hold the same keys."""

import pytest
from otter.test_files import ExceptionTestFile
from paths import NOTEBOOKS

from patchcore_core.teaching import quiz
from patchcore_core.teaching.exercises import Verdict
from patchcore_core.teaching.quiz_bank import QUESTIONS

QUESTION = quiz.Question(
    stem="What does the coreset's covering radius bound?",
    options={"a": ("the optimum", "why a is wrong"),
             "b": ("every patch score's rise", "why b is right"),
             "c": ("image AUROC", "why c is wrong")},
    key="b")


def said(capsys) -> str:
    return capsys.readouterr().out.strip()


def test_a_wrong_answer_says_not_quite_and_why_that_option_is_wrong(capsys):
    verdict = quiz.check("c", QUESTION)
    assert isinstance(verdict, Verdict) and verdict.ok is False
    out = said(capsys)
    assert out.splitlines() == ["not quite: try another option", "(c) image AUROC", "why c is wrong"]
    assert "why b is right" not in out, "a wrong answer does not give the key away"
    assert verdict.message == out


def test_the_right_answer_says_correct_and_why(capsys):
    verdict = quiz.check("b", QUESTION)
    assert verdict.ok is True and bool(verdict)
    assert said(capsys).splitlines() == ["correct", "(b) every patch score's rise", "why b is right"]


def test_in_a_notebook_the_explanation_is_markdown_below_the_verdicts_one_line(capsys, monkeypatch):
    # run_notebooks.py counts the lines a check prints: one per verdict, as for every other check.
    shown = []
    monkeypatch.setattr(quiz, "_in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", shown.append)
    assert quiz.check("c", QUESTION).ok is False
    assert said(capsys) == "not quite: try another option"
    assert [m.data for m in shown] == ["**c.** image AUROC\n\nwhy c is wrong"]


@pytest.mark.parametrize("written", ["B", " b ", "(b)", "b.", "b)"])
def test_a_letter_may_be_written_in_capitals_or_with_brackets(written, capsys):
    assert quiz.check(written, QUESTION).ok is True
    assert said(capsys).startswith("correct")


@pytest.mark.parametrize("unanswered", [..., None])
def test_an_unanswered_quiz_says_so_and_names_the_letters(unanswered, capsys):
    verdict = quiz.check(unanswered, QUESTION, what="`quiz_3`")
    assert verdict.ok is None and not verdict
    assert said(capsys) == "not answered yet: set `quiz_3` to one of 'a', 'b', 'c'"


@pytest.mark.parametrize("invalid", ["e", "ab", 2, "", ["b"]])
def test_an_answer_that_is_not_one_of_the_letters_is_not_quite_and_never_raises(invalid, capsys):
    verdict = quiz.check(invalid, QUESTION)
    assert verdict.ok is False
    out = said(capsys)
    assert out.startswith("not quite: your answer should be one of 'a', 'b', 'c', not ")
    assert "why" not in out


def test_a_question_whose_key_is_not_an_option_is_refused():
    with pytest.raises(ValueError, match="the key 'd' is not one of the options"):
        quiz.Question(options={"a": ("x", "y"), "b": ("x", "y")}, key="d")


def test_a_question_of_the_bank_is_checked_by_its_exercise_id(capsys):
    question = QUESTIONS["02.3"]
    wrong = next(letter for letter in question.letters if letter != question.key)
    assert quiz.check(question.key, "02.3").ok is True
    assert said(capsys).splitlines()[2] == question.options[question.key].why
    assert quiz.check(wrong, "02.3").ok is False
    assert said(capsys).splitlines()[2] == question.options[wrong].why


def test_every_notebook_has_one_question_in_the_bank_with_three_or_four_explained_options():
    numbers = sorted(p.name[:2] for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    assert sorted(qid.split(".")[0] for qid in QUESTIONS) == numbers
    for qid, question in QUESTIONS.items():
        assert 3 <= len(question.options) <= 4, qid
        assert question.stem and all(o.text and o.why for o in question.options.values()), qid
        assert question.options[question.key].why.startswith("Yes"), qid
        assert not any(o.why.startswith("Yes") for letter, o in question.options.items()
                       if letter != question.key), qid


def grading_file(qid: str) -> ExceptionTestFile:
    return ExceptionTestFile.from_file(str(NOTEBOOKS / "grading" / "tests" / f"{qid}.py"))


def run_cases(test_file: ExceptionTestFile, answer, variable: str) -> dict[bool, bool]:
    """Whether the public (False) and the hidden (True) cases pass on the answer."""
    test_file.run({variable: answer})
    return {r.test_case.hidden: r.passed for r in test_file.test_case_results}


@pytest.mark.parametrize("qid", sorted(QUESTIONS))
def test_the_graders_test_file_holds_the_banks_key(qid):
    # Otter's own loader and runner: the public case passes for any letter, the hidden one for the key only.
    question, variable = QUESTIONS[qid], f"quiz_{qid.split('.')[1]}"
    test_file = grading_file(qid)
    assert test_file.name == qid and test_file.all_or_nothing is False
    assert {tc.hidden: tc.points for tc in test_file.test_cases} == {False: 0, True: 1}
    for letter in question.letters:
        assert run_cases(test_file, letter.upper(), variable) == {False: True, True: letter == question.key}
    for blank in (..., None, "z"):
        assert run_cases(test_file, blank, variable) == {False: False, True: False}
    failed = next(r for r in test_file.test_case_results if not r.test_case.hidden)
    assert f"`{variable}` should be one of the letters" in failed.message


def test_no_grading_file_without_a_question():
    quiz_files = {p.stem for p in (NOTEBOOKS / "grading" / "tests").glob("*.py") if "quiz_" in p.read_text()}
    assert quiz_files == set(QUESTIONS)
