"""Serve the demo in this process on a free port, for tests and notebooks;
wait for a server in another process to answer."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(model, **build_kwargs):
    """``with serving(model, ...) as (url, demo):`` the demo runs at ``url`` until the block ends."""
    from demo.app import build_demo, launch

    demo = build_demo(model, **build_kwargs)
    port = free_port()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.close()


@contextlib.contextmanager
def serve(model, **build_kwargs):
    """``with serve(model, examples=...) as url:`` the demo runs at ``url`` until the block ends."""
    with serving(model, **build_kwargs) as (url, _):
        yield url


def wait_until_answering(url: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Poll ``url`` until it answers. Raises ``RuntimeError`` if ``proc``
    exits first and ``TimeoutError`` after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s") from None
            time.sleep(0.5)
