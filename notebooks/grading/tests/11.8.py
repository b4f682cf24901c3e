"""Quiz 11.8 (notebook 11): the answer is one letter; the hidden case holds the key."""

from otter.test_files import test_case

from patchcore_core.teaching.quiz import chosen_letter

OK_FORMAT = False
name = "11.8"
points = 1


@test_case(points=0, hidden=False)
def test_the_answer_is_one_of_the_letters(quiz_8):
    assert quiz_8 is not ... and quiz_8 is not None, "set `quiz_8` to one letter: a, b, c, d"
    assert chosen_letter(quiz_8) in ('a', 'b', 'c', 'd'), \
        f"`quiz_8` should be one of the letters a, b, c, d, not {quiz_8!r:.40}"


@test_case(points=1, hidden=True)
def test_the_answer_is_the_key(quiz_8):
    assert chosen_letter(quiz_8) == "b", "not the right option: read the explanation the check prints"
