"""11.2 One grid, one width: my_embed(layers, width), aggregated maps -> `width` values per patch.
Public: the notebook's check. Hidden: three layers, one layer, narrower and wider channels than `width`,
the capstone's references disabled."""

import torch
from otter.test_files import test_case

OK_FORMAT = False

name = "11.2"
points = 3


def _layers(seed, batch, *shapes):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, *shape, generator=g) for shape in shapes]


@test_case(points=1, hidden=False)
def test_check(my_embed, train_maps, WIDTH, SEED):
    from patchcore_core.teaching import exercises, grading

    grading.expect(exercises.check_exercise, "11.2", my_embed, train_maps, WIDTH, SEED)


@test_case(points=2, hidden=True)
def test_three_layers_and_other_widths_with_the_package_disabled(my_embed, env):
    from patchcore_core.teaching import grading
    from patchcore_core.teaching.capstone import package_embed

    cases = [(_layers(1201, 3, (40, 8, 6), (100, 4, 3), (7, 2, 2)), 64),   # wider than `width`: averaged
             (_layers(1202, 1, (3, 5, 5), (5, 3, 3)), 20),                   # narrower: stretched
             (_layers(1203, 2, (9, 3, 3)), 9)]                                # one layer
    wants = [package_embed(layers, width) for layers, width in cases]
    with grading.references_disabled(env, grading.CAPSTONE_REFERENCES):
        gots = [my_embed(layers, width) for layers, width in cases]
    for (layers, width), got, want in zip(cases, gots, wants):
        shapes = [tuple(l.shape) for l in layers]
        assert tuple(got.shape) == tuple(want.shape), \
            f"shape {tuple(got.shape)} for layers {shapes}, width {width}"
        assert torch.allclose(got.float(), want, rtol=1e-4, atol=1e-5), \
            f"values differ for layers {shapes}, width {width}"
