"""Concept quizzes: a multiple-choice question, and after an answer the
explanation of the option chosen.

A quiz is an exercise like the others (see :mod:`.exercises`): the starter
cell sets ``quiz_k = ...``, the learner replaces it with a letter, and the
check prints ``correct``, ``not quite`` or ``not answered yet`` and never
raises. After a wrong answer it says why that option is wrong (without
giving the key away); after the right one, why it is right. The verdict is
one printed line, like every check's (``run_notebooks.py`` counts them); in
a notebook the explanation is shown as Markdown below it, elsewhere printed::

    quiz_4 = "b"                          # the learner's answer
    teaching.quiz.check(quiz_4, "01.4")   # a question of :mod:`.quiz_bank`, by exercise id

The questions live in :mod:`.quiz_bank` rather than in the notebooks' check
cells, so that the student edition does not print the key in plain view; a
question can also be given directly, ``check(answer, Question(options, key))``.
"""

from __future__ import annotations

from .exercises import NOT_ANSWERED, Verdict, is_unanswered
from .quiz_bank import QUESTIONS, Option, Question


def chosen_letter(answer) -> str:
    """The letter an answer names: ``"B"``, ``" b "``, ``"(b)"`` and ``"b."`` all name ``"b"``."""
    return str(answer).strip().strip("().").strip().lower()


def _letters(question: Question) -> str:
    return ", ".join(f"'{letter}'" for letter in question.letters)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def _said(ok: bool | None, head: str, letter: str = "", option: Option | None = None) -> Verdict:
    print(head)
    if option is None:
        return Verdict(ok, head)
    if _in_notebook():  # below the verdict's line, not in it: the verdict stays the check's one line
        from IPython.display import Markdown, display

        display(Markdown(f"**{letter}.** {option.text}\n\n{option.why}"))
    else:
        print(f"({letter}) {option.text}\n{option.why}")
    return Verdict(ok, f"{head}\n({letter}) {option.text}\n{option.why}")


def check(answer, question: Question | str, *, what: str = "your answer") -> Verdict:
    """Print whether ``answer`` (a letter) is the key of ``question`` (a :class:`Question`,
    or an exercise id of :mod:`.quiz_bank` such as ``"01.4"``), then the chosen option's
    explanation. Never raises on an answer; the returned :class:`Verdict` is the one
    :mod:`.exercises` returns (``ok`` True, False, or None while unanswered)."""
    if isinstance(question, str):

        question = QUESTIONS[question]
    if is_unanswered(answer):
        return _said(None, f"{NOT_ANSWERED}: set {what} to one of {_letters(question)}")
    letter = chosen_letter(answer)
    if letter not in question.options:
        return _said(False, f"not quite: {what} should be one of {_letters(question)}, not {answer!r:.40}")
    option = question.options[letter]
    if letter == question.key:
        return _said(True, "correct", letter, option)
    return _said(False, "not quite: try another option", letter, option)
