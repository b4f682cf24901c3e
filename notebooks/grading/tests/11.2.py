"""11.2 One grid, one width: my_embed(layers, width), aggregated maps -> `width` values per patch."""

import torch
from otter.test_files import test_case

OK_FORMAT = False

name = "11.2"
points = 3


def _layers(seed, batch, *shapes):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, *shape, generator=g) for shape in shapes]


@test_case(points=1, hidden=False)
def test_rows_per_patch_pooled_to_the_width(my_embed):
    from patchcore_core.teaching.capstone import hint_embed, package_embed

    layers, width = _layers(12, 2, (6, 4, 4), (10, 2, 2)), 32
    got = my_embed(layers, width)
    assert tuple(got.shape) == (2 * 4 * 4, width), \
        "one row per patch of the first layer's grid (B*H*W rows), `width` values each"
    assert torch.allclose(got, package_embed(layers, width), rtol=1e-4, atol=1e-5), \
        hint_embed(my_embed, layers, width)


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
