"""Fixtures the integration tests share."""

import pytest


@pytest.fixture(scope="module")
def app_url(fitted, brick, tmp_path_factory):
    """The demo on the built-in brick model, served on 127.0.0.1 for one test module, with its own
    cache folder (examples: every third test image; fit examples: four training images)."""
    from servers import serve

    mp = pytest.MonkeyPatch()
    mp.setenv("PATCHCORE_CACHE", str(tmp_path_factory.mktemp("demo_cache")))
    examples = [(str(t.path), t.defect) for t in brick.test[::3]]
    try:
        with serve(fitted, examples=examples, fit_examples=[str(p) for p in brick.train[:4]],
                   category="brick") as url:
            yield url
    finally:
        mp.undo()
