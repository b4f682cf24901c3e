"""10.2 Counting parts. Public: the notebook's check. Hidden: drawn images (a speck under 200 pixels,
parts touching the border, an empty plate); count_parts disabled for the answer."""
from otter.test_files import test_case

OK_FORMAT = False
name = "10.2"
points = 3


@test_case(points=1, hidden=False)
def test_check(my_count_parts, one_each):
    import numpy as np

    from patchcore_core.teaching import exercises, grading
    from patchcore_core.util.images import read_image

    grading.expect(exercises.check_exercise, "10.2", my_count_parts,
                   [np.asarray(read_image(t.path)) for t in one_each])


@test_case(points=2, hidden=True)
def test_drawn_images(my_count_parts, env):
    import numpy as np

    from patchcore_core.teaching import grading
    from patchcore_core.teaching.logical import count_parts

    def plate(*parts):
        img = np.full((64, 64, 3), 128, np.uint8)
        for (y, x, h, w), colour in parts:
            img[y:y + h, x:x + w] = colour
        return img

    red, blue, green = (220, 30, 30), (30, 30, 220), (30, 200, 40)
    cases = [(plate(),), (plate(((0, 0, 20, 20), red), ((40, 40, 24, 24), blue)),),
             (plate(((5, 5, 20, 20), red), ((40, 5, 10, 10), green)),),  # a 100-pixel speck
             (plate(((0, 0, 15, 15), red), ((20, 20, 15, 15), blue), ((40, 0, 15, 64), green)),)]
    grading.matches(my_count_parts, count_parts, cases, env, what="my_count_parts")
