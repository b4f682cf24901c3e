"""Shared fixtures: the built-in dataset in a temporary cache, and one
fitted model reused by every test that only reads it."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def builtin_root(tmp_path_factory):
    """The built-in dataset (MVTec layout), written once per test session."""
    from patchcore_core.data.builtin import write_builtin_dataset

    return write_builtin_dataset(tmp_path_factory.mktemp("cache") / "builtin", seed=0)


@pytest.fixture(scope="session")
def brick(builtin_root):
    from patchcore_core.data.mvtec import MVTecCategory

    return MVTecCategory(builtin_root, "brick")


@pytest.fixture(scope="session")
def fitted(brick):
    """PatchCore fitted on the built-in brick category (CPU, default settings)."""
    from patchcore_core import PatchCore

    return PatchCore(device="cpu").fit(brick.train, progress=False)


@pytest.fixture
def never_work(monkeypatch):
    """Fail the test if any image is read, any model file loaded or any model fitted: for
    commands that must refuse bad outputs or settings before any work."""
    import patchcore_core.io.save_load as save_load
    import patchcore_core.pipeline.patchcore as model
    import patchcore_core.util.images as images

    def boom(*a, **k):
        raise AssertionError("work started before the outputs and settings were checked")

    monkeypatch.setattr(images, "read_image", boom)
    monkeypatch.setattr(model, "read_image", boom)
    monkeypatch.setattr(model.PatchCore, "fit", boom)
    monkeypatch.setattr(save_load, "read_state", boom)  # where loading any model file starts
