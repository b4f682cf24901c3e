"""Ctrl-C while ``patchcore fit --ray local`` starts its Ray instance.

Ray's start-up is a few processes (gcs_server, raylet, helpers, workers) that
the driver starts one after another. Before the fix a Ctrl-C in that window
was lost (exit 0), left processes behind, or crashed the interpreter at exit
(SIGSEGV). The cluster tests send Ctrl-C (SIGINT to the process group, as a
terminal does) at one moment of the start-up each and check the exit status and
that no process the command started is left; a quick test checks the same
order of events with a stand-in for Ray.

    pytest -m cluster tests/security/test_ray_interrupt.py
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
from PIL import Image

connect_module = importlib.import_module("patchcore_core.cluster.connect")  # not the function of that name
from paths import ROOT  # noqa: E402

try:
    import psutil
    import ray  # noqa: F401
except ImportError:
    psutil = None


def needs_a_local_cluster(test):
    """Marked like the other Ray tests (pytest -m cluster), skipped without Ray or /proc."""
    for mark in (pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300),
                 pytest.mark.skipif(psutil is None, reason="needs the cluster extra (ray, psutil)"),
                 pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")):
        test = mark(test)
    return test


class _FakeRay:
    """Stands in for the ray module: Ctrl-C arrives in the middle of ``init``."""

    def __init__(self):
        self.calls, self.up = [], False

    def is_initialized(self):
        return self.up

    def init(self, **kwargs):
        self.calls.append("init started")
        os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread's handler right here
        time.sleep(0.05)
        self.up = True
        self.calls.append("init finished")

    def shutdown(self):
        self.calls.append("shutdown")
        self.up = False


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
def test_ctrl_c_inside_ray_init_is_held_then_ray_is_stopped(monkeypatch, capfd):
    """Threat: a KeyboardInterrupt inside ray.init is lost or leaves a half-started Ray instance."""
    fake = _FakeRay()
    monkeypatch.setattr(connect_module, "require_ray", lambda: fake)
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(KeyboardInterrupt):
        connect_module.connect("local")
    assert fake.calls == ["init started", "init finished", "shutdown"]  # init ran whole, then stopped
    assert "interrupted: stopping the Ray instance" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(0)
    for i in range(12):  # enough that the fit is still running when the last Ctrl-C comes
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def _started_by(mark: str) -> list:
    """Every live process whose environment carries ``mark``: the command and all it started
    (Ray passes its environment on to gcs_server, raylet and the workers)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("PATCHCORE_TEST_MARK") == mark and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.Error, OSError):
            pass
    return found


def _children(pid: int) -> list:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _names(procs) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(p.name())
        except psutil.Error:
            pass
    return out


# When Ctrl-C comes: as soon as Ray's first process runs, when its raylet runs, and right
# after the cluster is up (the command has printed "ray: ..." and the fit starts).
MOMENTS = {"gcs_server starting": "gcs_server", "raylet starting": "raylet", "cluster just up": "ray: "}


@needs_a_local_cluster
@pytest.mark.parametrize("moment", MOMENTS)
def test_ctrl_c_during_ray_start_exits_130_and_leaves_no_process(moment, images, tmp_path):
    """Threat: Ctrl-C during a local Ray start is lost, crashes (SIGSEGV) or leaves Ray processes running."""
    mark = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATCHCORE_TEST_MARK": mark, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "patchcore_core.cli.main", "fit", "--images", str(images),
           "--out", str(tmp_path / "m.safetensors"), "--ray", "local", "--image-size", "64",
           "--device", "cpu", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, start_new_session=True, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err: list[str] = []
    cluster_up = threading.Event()

    def read_stderr():
        for line in proc.stderr:
            err.append(line)
            if line.startswith("ray: "):
                cluster_up.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    trigger = MOMENTS[moment]
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            if cluster_up.is_set() if trigger == "ray: " else trigger in _names(_children(proc.pid)):
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the command ended before {moment}:\n{''.join(err)}"
        assert time.monotonic() < deadline, f"never reached {moment}"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        rc = proc.wait(timeout=120)
        reader.join(timeout=10)
        left = _started_by(mark)
        for _ in range(50):  # children told to stop may take a moment to go
            if not left:
                break
            time.sleep(0.2)
            left = _started_by(mark)
        assert rc == 130, f"exit status {rc}, expected 130 (interrupted):\n{''.join(err)}"
        assert not left, f"left running after Ctrl-C at {moment}: {_names(left)}"
        assert "interrupted" in "".join(err)
    finally:
        for p in _started_by(mark):  # only what this test started
            try:
                p.kill()
            except psutil.Error:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
