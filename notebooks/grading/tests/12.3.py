"""Quiz 12.3 (notebook 12): the answer is one letter; the hidden case holds the key."""

from otter.test_files import test_case

from patchcore_core.teaching.quiz import chosen_letter

OK_FORMAT = False
name = "12.3"
points = 1


@test_case(points=0, hidden=False)
def test_the_answer_is_one_of_the_letters(quiz_3):
    assert quiz_3 is not ... and quiz_3 is not None, "set `quiz_3` to one letter: a, b, c, d"
    assert chosen_letter(quiz_3) in ('a', 'b', 'c', 'd'), \
        f"`quiz_3` should be one of the letters a, b, c, d, not {quiz_3!r:.40}"


@test_case(points=1, hidden=True)
def test_the_answer_is_the_key(quiz_3):
    assert chosen_letter(quiz_3) == "b", "not the right option: read the explanation the check prints"
