"""The capstone (notebook 11): its hints name the usual mistakes, its assembled steps fall back to the
package's, and its otter test files pass the solution edition and fail the starters and the mistakes."""

import math
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from paths import NOTEBOOKS
from scipy import ndimage
from torchvision.transforms.functional import gaussian_blur

from patchcore_core.pipeline.coreset import covering_radius
from patchcore_core.pipeline.features import PatchEmbedding, aggregate_layers
from patchcore_core.pipeline.memory_bank import knn_search
from patchcore_core.teaching import capstone

CAPSTONE = NOTEBOOKS / "11_patchcore_from_scratch.ipynb"
GRADING_TESTS = NOTEBOOKS / "grading" / "tests"


def rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- hints --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mistake, words", [
    (lambda m: F.avg_pool2d(m, 3, 1, 1, count_include_pad=False), "divides by 9 everywhere"),
    (lambda m: 9 * F.avg_pool2d(m, 3, 1, 1), "you summed"),
    (lambda m: F.avg_pool2d(m, 3, 1, 0), "padding=1"),
])
def test_the_aggregation_hint_names_the_mistake(mistake, words):
    assert words in capstone.hint_aggregate(mistake, rand(1, 3, 6, 7))


def test_the_aggregation_hint_for_an_unknown_answer_says_what_to_compute():
    assert "zeros outside the map" in capstone.hint_aggregate(lambda m: m + 1, rand(1, 3, 6, 7))
    assert "zeros outside the map" in capstone.hint_aggregate(lambda m: 1 / 0, rand(1, 3, 6, 7))  # no raise


def embed_with(mode="bilinear", align_corners=False, per_layer=True, channels_last=True):
    def embed(layers, width):
        grid = layers[0].shape[-2:]
        rows = []
        for m in layers:
            corners = align_corners if mode == "bilinear" else None
            m = F.interpolate(m, size=grid, mode=mode, align_corners=corners)
            rows.append(m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]) if channels_last
                        else m.reshape(-1, m.shape[1]))
        if not per_layer:
            return F.adaptive_avg_pool1d(torch.cat(rows, 1)[:, None], width)[:, 0]
        pooled = torch.cat([F.adaptive_avg_pool1d(r[:, None], width)[:, 0] for r in rows], 1)
        return F.adaptive_avg_pool1d(pooled[:, None], width)[:, 0]
    return embed


def test_embed_as_written_in_the_solution_is_the_packages_step():
    layers = [rand(2, 6, 4, 4, seed=1), rand(2, 10, 2, 2, seed=2)]
    assert torch.allclose(embed_with()(layers, 32), capstone.package_embed(layers, 32), atol=1e-6)


@pytest.mark.parametrize("mistake, words", [
    (embed_with(mode="nearest"), "nearest neighbours"),
    (embed_with(align_corners=True), "align_corners=True"),
    (embed_with(per_layer=False), "pool each layer"),
    (embed_with(channels_last=False), "permute(0, 2, 3, 1)"),
])
def test_the_embedding_hint_names_the_mistake(mistake, words):
    layers = [rand(2, 6, 4, 4, seed=1), rand(2, 10, 2, 2, seed=2)]
    assert not torch.allclose(mistake(layers, 32), capstone.package_embed(layers, 32))
    assert words in capstone.hint_embed(mistake, layers, 32)


def test_package_embed_keeps_the_distances_of_the_packages_compact_features():
    layers = [rand(2, 5, 4, 4, seed=3), rand(2, 7, 2, 2, seed=4)]
    full = capstone.package_embed(layers, 64)
    on_grid, _ = aggregate_layers(layers, neighbourhood=1)
    compact = PatchEmbedding([5, 7], 64, 64).compact(PatchEmbedding.concat(on_grid))
    assert full.shape == (32, 64) and compact.shape == (32, 12)
    exact = dict(compute_mode="donot_use_mm_for_euclid_dist")
    assert torch.allclose(torch.cdist(full, full, **exact), torch.cdist(compact, compact, **exact), atol=1e-4)


def test_the_projection_hint_names_the_mistake():
    def unscaled(x, dim, seed):
        return x.float() @ torch.randn(x.shape[1], dim, generator=torch.Generator().manual_seed(seed))

    def scaled_by_input_width(x, dim, seed):
        return unscaled(x, dim, seed) / math.sqrt(x.shape[1])

    x = rand(20, 50, seed=5)
    assert "divide the matrix by sqrt(dim)" in capstone.hint_project(unscaled, x, 8, 3)
    assert "not by sqrt of the input width" in capstone.hint_project(scaled_by_input_width, x, 8, 3)


def greedy(x, k, first, last_only=False):
    nearest = torch.linalg.vector_norm(x - x[first], dim=1)
    picks = [first]
    for _ in range(1, k):
        i = int(nearest.argmax())
        picks.append(i)
        step = torch.linalg.vector_norm(x - x[i], dim=1)
        nearest = step if last_only else torch.minimum(nearest, step)
    return torch.tensor(picks)


def test_the_coreset_hint_names_the_first_pick_that_differs_and_both_radii():
    x = rand(200, 2, seed=6, dtype=torch.float64)
    right = greedy(x, 10, 0)
    wrong = right.clone()
    wrong[4] = int(torch.cdist(x, x[right[:4]]).min(dim=1).values.argsort()[-2])  # the second farthest
    hint = capstone.hint_coreset(lambda x, k, first: wrong, [(x, 10, 0)])
    assert f"pick 5 differs: you took point {int(wrong[4])}" in hint and f"greedy takes the point farthest " \
        f"from them, {int(right[4])}" in hint and "cover every point within" in hint
    assert capstone.hint_coreset(greedy, [(x, 10, 0)]) == ""


def test_the_coreset_hint_knows_the_usual_mistakes():
    x = rand(200, 2, seed=7, dtype=torch.float64)
    last_only = capstone.hint_coreset(lambda x, k, f: greedy(x, k, f, last_only=True), [(x, 12, 0)])
    assert "last pick only" in last_only or "picked twice" in last_only
    assert "picked twice" in capstone.hint_coreset(lambda x, k, f: torch.tensor([f] * k), [(x, 5, 0)])
    other_start = capstone.hint_coreset(lambda x, k, f: greedy(x, k, 1), [(x, 5, 0)])
    assert "start from the given first pick" in other_start
    assert "return k = 5 indices" in capstone.hint_coreset(lambda x, k, f: greedy(x, 4, f), [(x, 5, 0)])


def test_covering_radii_shrink_to_the_packages_covering_radius():
    x = rand(300, 3, seed=8, dtype=torch.float64)
    picks = greedy(x, 20, 0)
    radii = capstone.covering_radii(x, picks)
    assert (radii[1:] <= radii[:-1]).all()
    assert math.isclose(float(radii[-1]), covering_radius(x, picks), rel_tol=1e-9)


def test_the_patch_score_hint_names_squared_distances_and_the_wrong_neighbour():
    q, bank = rand(30, 8, seed=9), rand(90, 8, seed=10)
    def squared(q, b):
        return knn_search(q, b, 1)[0][:, 0] ** 2

    assert "squared distances" in capstone.hint_patch_scores(squared, q, bank)
    def farthest(q, b):
        return torch.cdist(q, b).amax(dim=1)

    assert "farthest bank patch" in capstone.hint_patch_scores(farthest, q, bank)


def test_the_image_score_hint_names_the_mean():
    p = torch.rand(3, 5, 6, generator=torch.Generator().manual_seed(11))
    assert "take the max" in capstone.hint_image_scores(lambda p: p.flatten(1).mean(1), p)
    assert "flatten first" in capstone.hint_image_scores(lambda p: p.amax(dim=1), p)


def test_the_map_hint_names_scipys_border_mode_and_the_missing_blur():
    p = 5 * torch.rand(2, 7, 9, generator=torch.Generator().manual_seed(12))

    def up(p):
        return F.interpolate(p[:, None], size=40, mode="bilinear", align_corners=False)

    def scipy_default(p, size, sigma):
        return torch.from_numpy(np.stack([ndimage.gaussian_filter(m, sigma) for m in up(p)[:, 0].numpy()]))

    def torch_blur(p, size, sigma):
        return gaussian_blur(up(p), 2 * int(4 * sigma + 0.5) + 1, sigma)[:, 0]

    assert "mode='mirror'" in capstone.hint_anomaly_maps(scipy_default, p, 40, 2.0)
    assert "not smoothed yet" in capstone.hint_anomaly_maps(lambda p, s, sg: up(p)[:, 0], p, 40, 2.0)
    assert torch.allclose(torch_blur(p, 40, 2.0), torch.from_numpy(np.stack(
        [ndimage.gaussian_filter(m, 2.0, mode="mirror") for m in up(p)[:, 0].numpy()])), atol=1e-4)


# --- the assembled pipeline ---------------------------------------------------------------------

def test_steps_run_the_learners_function_or_the_packages_and_say_whose():
    def unwritten(x):
        raise NotImplementedError

    steps = capstone.Steps()
    double = steps.use("double", lambda x: 2 * x, lambda x: -1)
    triple = steps.use("triple", unwritten, lambda x: 3 * x)
    silent = steps.use("silent", lambda x: None, lambda x: 4 * x)
    assert (double(1), triple(1), silent(1)) == (2, 3, 4)
    assert steps.whose == {"double": "yours", "triple": "the package's (yours is not written yet)",
                           "silent": "the package's (yours is not written yet)"}
    assert not steps.all_yours and [r["step"] for r in steps.rows()] == ["double", "triple", "silent"]


def test_steps_let_the_learners_errors_through():
    def broken(x):
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        capstone.Steps().use("broken", broken, lambda x: x)(1)


# --- the otter test files -----------------------------------------------------------------------

class FittedModel:
    """What the capstone's checks read of the notebook's fitted `reference`: its bank's rows, the patch
    scores of test images, the map's size and sigma."""

    def __init__(self):
        self.bank = SimpleNamespace(features=rand(1200, 152, seed=20))
        self.config = SimpleNamespace(image_size=64, sigma=4.0)

    def score(self, paths):
        patch = 5 * torch.rand(len(paths), 8, 8, generator=torch.Generator().manual_seed(21))
        return patch.flatten(1).amax(1), None, patch, None


def notebook_data() -> dict:
    """The notebook's globals the checks take, small: two layers' training maps, the fitted model, ..."""
    return {"train_maps": [rand(3, 8, 8, 8, seed=22), rand(3, 16, 4, 4, seed=23)], "reference": FittedModel(),
            "test_paths": [f"test_{i}.png" for i in range(5)], "SEED": 0, "WIDTH": 64, "PROJECTION_DIM": 128}


def notebook_functions(tag: str) -> dict:
    """The notebook's functions as its cells tagged ``tag`` (``solution`` or ``exercise``) define them,
    and the notebook's data the checks take (:func:`notebook_data`)."""
    env: dict = notebook_data()
    exec("import math\nimport faiss\nimport numpy as np\nimport torch\nimport torch.nn.functional as F\n"
         "from torchvision.transforms.functional import gaussian_blur", env)
    for cell in nbformat.read(CAPSTONE, as_version=4).cells:
        if cell.cell_type == "code" and tag in cell.metadata.get("tags", []):
            exec(cell.source, env)
    return env


def grading_files() -> list[Path]:
    """The function exercises' test files (the quiz, 11.8, is tested with the others in test_quiz.py)."""
    files = [p for p in GRADING_TESTS.glob("11.*.py") if "quiz_" not in p.read_text()]
    return sorted(files, key=lambda p: int(p.stem.split(".")[1]))


def run(path: Path, env: dict, hidden: bool):
    from otter.test_files.exception_test import ExceptionTestFile

    test_file = ExceptionTestFile.from_file(str(path))
    test_file.test_cases = [tc for tc in test_file.test_cases if tc.hidden == hidden]
    test_file.run(env)
    return test_file.test_case_results


def test_one_grading_file_per_exercise_each_with_public_and_hidden_cases():
    questions = [c.source.splitlines()[0] for c in nbformat.read(CAPSTONE, as_version=4).cells
                 if c.cell_type == "markdown" and c.source.startswith("### ") and "Quiz:" not in c.source]
    assert [p.stem for p in grading_files()] == [f"11.{q.split('.')[0][4:]}" for q in questions]
    from otter.test_files.exception_test import ExceptionTestFile

    for path in grading_files():
        cases = ExceptionTestFile.from_file(str(path)).test_cases
        assert {tc.hidden for tc in cases} == {False, True}, path.name


@pytest.mark.parametrize("path", grading_files(), ids=lambda p: p.stem)
def test_public_cases_pass_the_solution_and_fail_the_starter(path):
    assert all(r.passed for r in run(path, notebook_functions("solution"), hidden=False))
    results = run(path, notebook_functions("exercise"), hidden=False)
    assert results and not any(r.passed for r in results)
    assert "NotImplementedError" in results[0].message


@pytest.mark.parametrize("name, mistake, words", [
    ("11.1", lambda m: F.avg_pool2d(m, 3, 1, 1, count_include_pad=False), "divides by 9 everywhere"),
    ("11.5", lambda q, b: torch.cdist(q, b).amin(dim=1) ** 2, "squared distances"),
    ("11.6", lambda p: p.flatten(1).mean(1), "take the max"),
])
def test_a_public_case_says_what_is_off_without_the_expected_values(name, mistake, words):
    function = {"11.1": "my_aggregate", "11.5": "my_patch_scores", "11.6": "my_image_scores"}[name]
    [result] = run(GRADING_TESTS / f"{name}.py", {**notebook_data(), function: mistake}, hidden=False)
    assert not result.passed and words in result.message
    assert "tensor(" not in result.message  # no expected values


WRAPPED = ("from patchcore_core.pipeline.coreset import random_projection, reference_greedy_coreset\n"
           "from patchcore_core.pipeline.features import local_aggregate\n"
           "from patchcore_core.pipeline.memory_bank import knn_search\n"
           "from patchcore_core.pipeline.scoring import anomaly_map, image_scores\n"
           "from patchcore_core.teaching.capstone import package_embed\n"
           "my_aggregate = lambda fmap: local_aggregate(fmap, 3)\n"
           "my_embed = lambda layers, width=1024: package_embed(layers, width)\n"
           "my_project = lambda x, dim=128, seed=0: random_projection(x, dim, seed)\n"
           "my_greedy_coreset = lambda x, k, first: (\n"
           "    reference_greedy_coreset(x, k, x.shape[1], first=first).indices)\n"
           "my_patch_scores = lambda q, bank: knn_search(q, bank, 1)[0][:, 0]\n"
           "my_image_scores = lambda p: image_scores(p)\n"
           "my_anomaly_maps = lambda p, size=224, sigma=4.0: anomaly_map(p, size, sigma)\n")


def wrapped_references() -> dict:
    """The solution notebook's namespace, with each answer replaced by a call of the package's step."""
    env = notebook_functions("solution")
    exec(WRAPPED, env)
    return env


@pytest.mark.parametrize("path", grading_files(), ids=lambda p: p.stem)
def test_hidden_cases_pass_the_solution_and_fail_a_wrapped_reference(path):
    assert all(r.passed for r in run(path, notebook_functions("solution"), hidden=True))
    assert not any(r.passed for r in run(path, wrapped_references(), hidden=True))


# --- the notebook's checks (teaching.checks, "11.k") ------------------------------------------------

CHECK_ARGS = {"11.1": ("my_aggregate", "train_maps", "SEED"),
              "11.2": ("my_embed", "train_maps", "WIDTH", "SEED"),
              "11.3": ("my_project", "reference.bank.features", "PROJECTION_DIM", "SEED"),
              "11.4": ("my_greedy_coreset", "reference.bank.features", "SEED"),
              "11.5": ("my_patch_scores", "reference.bank.features", "SEED"),
              "11.6": ("my_image_scores", "reference", "test_paths", "SEED"),
              "11.7": ("my_anomaly_maps", "reference", "test_paths", "SEED")}


def check(exercise: str, env: dict):
    """The notebook's check cell of ``exercise``, run in ``env``."""
    from patchcore_core.teaching import exercises

    return exercises.check_exercise(exercise, *(eval(name, env) for name in CHECK_ARGS[exercise]))


def test_every_check_cell_is_the_check_tested_here():
    cells = [c.source for c in nbformat.read(CAPSTONE, as_version=4).cells
             if "check" in c.metadata.get("tags", []) and "check_exercise" in c.source]
    assert cells == [f'exercises.check_exercise("{e}", {", ".join(args)})' for e, args in CHECK_ARGS.items()]


@pytest.mark.parametrize("exercise", list(CHECK_ARGS))
def test_a_check_passes_the_solution_waits_for_the_starter_and_fails_a_wrapped_reference(exercise, capsys):
    assert check(exercise, notebook_functions("solution")).ok is True
    assert check(exercise, notebook_functions("exercise")).ok is None
    unanswered = {**notebook_functions("exercise"), CHECK_ARGS[exercise][0]: ...}
    assert check(exercise, unanswered).ok is None
    capsys.readouterr()
    assert check(exercise, wrapped_references()).ok is False
    assert "the grader disabled" in capsys.readouterr().out


def test_the_coreset_check_names_the_pick_that_differs(capsys):
    env = {**notebook_data(), "my_greedy_coreset": lambda x, k, first: greedy(x, k, first, last_only=True)}
    assert check("11.4", env).ok is False
    said = capsys.readouterr().out
    assert "the covering radius after each pick" in said
    assert "last pick only" in said or "picked twice" in said
