"""teaching.notebook_setup: the one call of every notebook's setup cell."""

import matplotlib
import numpy as np
import pytest
import torch

from patchcore_core import teaching
from patchcore_core.util.images import DataError

ENV = ("PATCHCORE_DEVICE", "CI", "PATCHCORE_DATA_ROOT", "PATCHCORE_CATEGORY")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def fail_if_called():
    raise AssertionError("the default data was written although the data root was given")


def test_defaults_are_the_builtin_data_on_auto_device_not_fast(clean_env, builtin_root):
    setup = teaching.notebook_setup(default_root=lambda: builtin_root)
    assert (setup.seed, setup.device, setup.fast) == (0, "auto", False)
    assert (setup.data_root, setup.category) == (builtin_root, "brick")
    assert setup.cat.root == builtin_root and setup.cat.category == "brick"
    assert str(setup) == (f"brick: {len(setup.cat.train)} good training images, {len(setup.cat.test)} test "
                          f"images (defects: {', '.join(setup.cat.defects)}); FAST=False")


def test_the_environment_picks_device_fast_data_and_category(clean_env, builtin_root):
    clean_env.setenv("PATCHCORE_DEVICE", "cpu")
    clean_env.setenv("CI", "true")
    clean_env.setenv("PATCHCORE_DATA_ROOT", str(builtin_root))
    clean_env.setenv("PATCHCORE_CATEGORY", "grass")
    setup = teaching.notebook_setup(default_category="gravel", default_root=fail_if_called)
    assert (setup.device, setup.fast, setup.data_root, setup.category) == ("cpu", True, builtin_root, "grass")
    assert str(setup).startswith("grass: ") and str(setup).endswith("; FAST=True")


def test_an_empty_variable_counts_as_unset(clean_env, builtin_root):
    # As before (`os.environ.get(...) or builtin_root()`, `bool(os.environ.get("CI"))`).
    clean_env.setenv("CI", "")
    clean_env.setenv("PATCHCORE_DATA_ROOT", "")
    setup = teaching.notebook_setup(default_category="gravel", default_root=lambda: builtin_root)
    assert (setup.fast, setup.data_root, setup.category) == (False, builtin_root, "gravel")


def test_arguments_in_the_cell_win_over_the_environment(clean_env, builtin_root, tmp_path):
    clean_env.setenv("PATCHCORE_DATA_ROOT", str(tmp_path))
    clean_env.setenv("PATCHCORE_CATEGORY", "brick")
    setup = teaching.notebook_setup(str(builtin_root), "grass", default_root=fail_if_called)
    assert (setup.data_root, setup.category, setup.cat.category) == (builtin_root, "grass", "grass")


def test_a_home_relative_root_is_expanded(clean_env, builtin_root):
    clean_env.setenv("HOME", str(builtin_root.parent))
    setup = teaching.notebook_setup(f"~/{builtin_root.name}", default_root=fail_if_called)
    assert setup.data_root == builtin_root


def test_a_missing_category_names_the_ones_found(clean_env, builtin_root):
    with pytest.raises(DataError, match="'bottle' not found .* brick, grass, gravel"):
        teaching.notebook_setup(builtin_root, "bottle")


def test_it_seeds_torch_and_numpy_and_styles_the_plots(clean_env, builtin_root):
    with matplotlib.rc_context({"figure.dpi": 100, "font.size": 10, "axes.titlesize": 10}):  # restored after
        teaching.notebook_setup(builtin_root, seed=3)
        style = {k: matplotlib.rcParams[k] for k in ("figure.dpi", "font.size", "axes.titlesize")}
    a = torch.rand(3), np.random.rand(3)
    torch.manual_seed(3)
    np.random.seed(3)
    assert torch.equal(a[0], torch.rand(3)) and np.array_equal(a[1], np.random.rand(3))
    assert style == {"figure.dpi": 80, "font.size": 12, "axes.titlesize": 13}
