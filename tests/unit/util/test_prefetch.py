"""The prefetching reader (issue 25): decoding runs ahead of scoring, in order, bounded."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from patchcore_core.util.images import DataError
from patchcore_core.util.prefetch import prefetched


def test_results_in_order_with_each_error_in_its_place():
    def load(i):
        if i == 2:
            raise DataError(f"{i}: broken")
        time.sleep(0.01 * (5 - i))  # later items finish first
        return i * 10

    got = list(prefetched(range(5), load, ahead=3, workers=3))
    assert [(i, v) for i, v, _ in got] == [(0, 0), (1, 10), (2, None), (3, 30), (4, 40)]
    assert str(got[2][2]) == "2: broken"


def test_loads_run_in_background_threads_at_most_ahead_of_the_consumer():
    started, lock = [], threading.Lock()

    def load(i):
        with lock:
            started.append((i, threading.current_thread() is threading.main_thread()))
        return i

    stream = prefetched(range(20), load, ahead=4, workers=2)
    next(stream)
    time.sleep(0.2)
    assert not any(main for _, main in started)
    assert 1 < len(started) <= 5  # the first result and up to 4 ahead, not all 20
    stream.close()


def test_refuses_nonsense_sizes():
    with pytest.raises(ValueError, match="ahead"):
        list(prefetched([1], str, ahead=0))


def test_predict_over_a_folder_decodes_ahead_of_the_model(tmp_path, monkeypatch):
    """``patchcore predict``: images are decoded before the model asks for them, in another thread;
    a broken file is named in its place and costs the others nothing."""
    from patchcore_core.cli import predict as predict_command
    from patchcore_core.util import images as images_module

    paths = []
    for i in range(10):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((16, 16, 3), i, np.uint8)).save(paths[-1])
    (tmp_path / "5.png").write_bytes(b"not a png")
    decoded = []

    def read_image(path):
        decoded.append((path, threading.current_thread() is threading.main_thread()))
        return images_module.read_image(path)

    monkeypatch.setattr(predict_command, "read_image", read_image, raising=False)
    seen_at_first_call = []

    class Model:
        batch_size = 2

        def predict(self, images):
            if not seen_at_first_call:
                time.sleep(0.2)  # the reader keeps going meanwhile
                seen_at_first_call.append(len(decoded))
            assert all(isinstance(im, Image.Image) for im in images)  # decoded already, not paths
            return [int(np.asarray(im)[0, 0, 0]) for im in images]

    out = predict_command.predict_each(Model(), paths)
    assert out[:5] == [0, 1, 2, 3, 4] and out[6:] == [6, 7, 8, 9]
    assert isinstance(out[5], str) and "5.png" in out[5]
    assert seen_at_first_call[0] > Model.batch_size  # decoding ran ahead of the first batch
    assert not any(main for _, main in decoded)
