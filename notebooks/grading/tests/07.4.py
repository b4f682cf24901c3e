"""Quiz 07.4 (notebook 07): the answer is one letter; the hidden case holds the key."""

from otter.test_files import test_case

from patchcore_core.teaching.quiz import chosen_letter

OK_FORMAT = False
name = "07.4"
points = 1


@test_case(points=0, hidden=False)
def test_the_answer_is_one_of_the_letters(quiz_4):
    assert quiz_4 is not ... and quiz_4 is not None, "set `quiz_4` to one letter: a, b, c, d"
    assert chosen_letter(quiz_4) in ('a', 'b', 'c', 'd'), \
        f"`quiz_4` should be one of the letters a, b, c, d, not {quiz_4!r:.40}"


@test_case(points=1, hidden=True)
def test_the_answer_is_the_key(quiz_4):
    assert chosen_letter(quiz_4) == "b", "not the right option: read the explanation the check prints"
