"""Shared fixtures: the built-in dataset in a temporary cache, and one
fitted model reused by every test that only reads it."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one thread each (torch, faiss, and the notebook kernels and commands they
    # start), else OpenMP's spin-waiting threads fight over the cores and the run takes longer than alone.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    # Each worker's demos keep their uploads apart: in one shared /tmp/gradio a file uploaded to one demo
    # had the path of the other's (content-hashed), which that demo rightly refused as not uploaded to it.
    os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(tempfile.gettempdir(),
                                                          f"gradio-{os.environ['PYTEST_XDIST_WORKER']}"))

# `make test` runs on two workers (pytest-xdist, `-n 2`) with the scheduler below: each test module is one
# unit of work, so its module and session fixtures are built once. The notebook runs on the built-in data
# and the decks built from them (test_slides_browser reuses the runs that test_notebooks keeps in
# build/test-decks) are one unit, the longest, so it starts first; the runs on real data (independent of
# it) start beside it on the other worker; the other long modules follow, and the unit tests fill in.
# (A scheduler of our own, not xdist's `loadgroup`: that marks groups by renaming node ids, which
# pytest 9 no longer reads.)
CHAINED = {"test_notebooks.py": "notebooks", "test_slides_browser.py": "notebooks",
           # The demo's browser tests run first on the other worker: run after some other modules there,
           # Playwright found an asyncio loop marked running in the worker's main thread (not in one
           # process; the module that leaves it is not found yet).
           "test_demo_browser.py": "demo-browser", "test_demo_browser_layout.py": "demo-browser",
           "test_demo_browser_tabs.py": "demo-browser"}
REAL_DATA_RUNS = "notebooks-real-data"
LONG_FIRST = ["notebooks", "demo-browser", REAL_DATA_RUNS, "test_grading.py", "test_cluster.py",
              "test_deploy.py", "test_bench_demo_load.py", "test_bench_deploy.py"]


def unit_of_work(nodeid: str) -> str:
    path = nodeid.split("::")[0]
    name = path.rsplit("/", 1)[-1]
    if name == "test_notebooks.py" and "::test_notebook_runs_on_real_data[" in nodeid:
        return REAL_DATA_RUNS
    return CHAINED.get(name, path)


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByUnitOfWork(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

    config.option.loadscopereorder = False  # the order below, not the largest unit first
    return ByUnitOfWork(config, log)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        unit = unit_of_work(item.nodeid).rsplit("/", 1)[-1]
        return LONG_FIRST.index(unit) if unit in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: the order inside each module is kept


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
