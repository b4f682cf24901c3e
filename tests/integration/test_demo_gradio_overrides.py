"""The demo replaces two pieces of Gradio (demo/uploads.py: the file inputs'
``preprocess``; demo/app.py: the image cache writer). Public API would
survive an upgrade; these do not necessarily, so this test fails loudly on a
Gradio whose overridden functions changed, naming what to re-check.

On a failure: read the new function, check the override still does what
its docstring says (the upload and browser tests help), then record the new
fingerprint here and the tested version in pyproject.toml.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from pathlib import Path

import pytest
import tomllib
from paths import ROOT

# (what, fingerprint of its source under the tested gradio, who depends on it)
PINNED = {
    "gradio.Image.preprocess": ("95813c82835e45d4", "demo/uploads.py image_input (calls it: pasted images)"),
    "gradio.File.preprocess": ("9611adfd016fb6e6", "demo/uploads.py files_input / file_input (replace it)"),
    "gradio.processing_utils.save_pil_to_cache": ("ea8f5a3ffa0371a1",
                                                  "demo/app.py _cache_images_atomically (replaces it)"),
}


def _resolve(dotted: str):
    import gradio as gr
    from gradio import processing_utils

    return {"gradio.Image.preprocess": gr.Image.preprocess, "gradio.File.preprocess": gr.File.preprocess,
            "gradio.processing_utils.save_pil_to_cache": processing_utils.save_pil_to_cache}[dotted]


def _original(fn):
    """Gradio's function, also when the demo's replacement is installed in this process."""
    return getattr(fn, "__wrapped__", fn)


@pytest.mark.parametrize("dotted", sorted(PINNED))
def test_overridden_gradio_functions_are_unchanged(dotted):
    import gradio

    expected, user = PINNED[dotted]
    fn = _resolve(dotted)
    src = inspect.getsource(_original(fn))
    got = hashlib.sha256(src.encode()).hexdigest()[:16]
    assert got == expected, (
        f"gradio {gradio.__version__} changed {dotted} (fingerprint {got}, tested {expected}). "
        f"Re-check {user} against the new source, then update PINNED in {Path(__file__).name} "
        "and the gradio range in pyproject.toml.")


def test_the_cache_writer_override_is_the_one_gradio_calls():
    """Gradio must look the writer up through its module (so replacing the
    module attribute reaches every caller), with the signature we replace."""
    import gradio
    from gradio import image_utils, processing_utils

    assert re.search(r"processing_utils\.save_pil_to_cache\(", inspect.getsource(image_utils)), (
        f"gradio {gradio.__version__}: image_utils no longer calls processing_utils.save_pil_to_cache; "
        "demo/app.py _cache_images_atomically would have no effect")
    params = list(inspect.signature(_original(processing_utils.save_pil_to_cache)).parameters)
    assert params[:4] == ["img", "cache_dir", "name", "format"]


def test_the_installed_gradio_is_in_the_tested_range():
    import gradio
    from packaging.specifiers import SpecifierSet

    apps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["apps"]
    spec = next(d for d in apps if d.startswith("gradio"))[len("gradio"):]
    assert gradio.__version__ in SpecifierSet(spec), f"gradio {gradio.__version__} is outside {spec}"
