"""The demo as a person meets it (issue 24), below the browser: unfamiliar images are
named, big uploads are made small on arrival, the fixed colour scale stays fixed, and
the Threshold and Compare tabs follow the model in use and say which data they use."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def grass(builtin_root):
    from patchcore_core.data.mvtec import MVTecCategory

    return MVTecCategory(builtin_root, "grass")


def test_an_image_unlike_the_training_images_gets_a_warning(fitted, brick, grass):
    from demo import logic

    unlike = logic.predict(fitted, str(grass.test[0].path))
    assert logic.is_unlike(unlike.unlike_share)
    assert "unlike anything in the training images" in logic.score_text(unlike)
    for item in brick.test:  # the model's own object, good or defective: no warning
        insp = logic.predict(fitted, str(item.path))
        assert not logic.is_unlike(insp.unlike_share), item.path
        assert "unlike" not in logic.score_text(insp)


def test_the_fixed_colour_scale_stops_at_twice_the_threshold(fitted, brick):
    from demo import logic

    hole = next(t.path for t in brick.test if t.defect == "hole")
    insp = logic.predict(fitted, str(hole))
    assert insp.anomaly_map.max() > 2 * fitted.threshold  # a strong defect
    assert insp.scale == pytest.approx((0.5 * fitted.threshold, 2 * fitted.threshold))


def _big_png(path, w=3000, h=2000):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (h // 50, w // 50, 3), dtype=np.uint8)
    Image.fromarray(small).resize((w, h), Image.Resampling.NEAREST).save(path)
    return path


def test_big_uploads_are_made_small_once(tmp_path):
    from demo.downscale import MAX_SIDE, shrink

    big = _big_png(tmp_path / "big.png")
    out = shrink(str(big), str(tmp_path / "small"))
    assert out != str(big)
    with Image.open(out) as img:
        assert img.size == (MAX_SIDE, round(MAX_SIDE * 2 / 3))  # the aspect ratio kept
        assert img.mode == "RGB"
    assert shrink(str(big), str(tmp_path / "small")) == out  # made once, then reused
    jpeg = tmp_path / "big.jpg"
    Image.open(big).save(jpeg, quality=90)
    with Image.open(shrink(str(jpeg), str(tmp_path / "small"))) as img:
        assert max(img.size) == MAX_SIDE
    small = tmp_path / "small.png"
    Image.new("RGB", (300, 200)).save(small)
    assert shrink(str(small), str(tmp_path / "small")) == str(small)  # already small: as it is
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    assert shrink(str(notes), str(tmp_path / "small")) == str(notes)  # check_image names it later


def test_the_image_input_hands_over_the_small_copy(tmp_path):
    from types import SimpleNamespace

    from demo.uploads import UploadPolicy, image_input

    cache = tmp_path / "cache"
    cache.mkdir()
    big = _big_png(cache / "big.png")
    image = image_input(UploadPolicy(cache_dir=cache), label="x")
    out = image.preprocess(SimpleNamespace(path=str(big), url=None))
    assert out != str(big.resolve()) and str(cache.resolve()) in out
    with Image.open(out) as img:
        assert max(img.size) <= 1024


@pytest.fixture(scope="module")
def client(fitted, brick, tmp_path_factory):
    gradio_client = pytest.importorskip("gradio_client")
    from servers import serve

    mp = pytest.MonkeyPatch()
    mp.setenv("PATCHCORE_CACHE", str(tmp_path_factory.mktemp("demo_cache")))
    try:
        with serve(fitted, examples=[(str(t.path), t.defect) for t in brick.test[::4]],
                   fit_examples=[str(p) for p in brick.train[:4]], category="brick") as url:
            yield gradio_client.Client(url, verbose=False)
    finally:
        mp.undo()


def test_threshold_and_compare_follow_the_model_in_use(client, grass, brick):
    from gradio_client import handle_file

    *_, summary, _ = client.predict("brick", None, api_name="/evaluate_set")
    assert "built-in brick test set" in summary and "scored with built-in brick" in summary
    hole = next(t.path for t in brick.test if t.defect == "hole")
    msg = client.predict(handle_file(str(hole)), "coreset 10% (greedy)", "coreset 1% (greedy)", None,
                         api_name="/compare")[-1]
    assert "the built-in brick good images" in msg

    # a model fitted on the visitor's own (grass) images: brick is judged by the brick model, saying so
    client.predict([handle_file(str(p)) for p in grass.train[:4]], api_name="/fit")
    *_, summary, _ = client.predict("brick", None, api_name="/evaluate_set")
    assert "scored with the built-in brick model" in summary and "your model" in summary
    msg = client.predict(handle_file(str(grass.test[0].path)), "coreset 10% (greedy)",
                         "coreset 1% (greedy)", None, api_name="/compare")[-1]
    assert "the training images of your model" in msg
