"""Serve the demo in this process on a free port, for tests and notebooks."""

from __future__ import annotations

import contextlib
import socket


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(model, **build_kwargs):
    """``with serve(model, examples=...) as url:`` the demo runs at ``url`` until the block ends."""
    from .app import build_demo, launch

    demo = build_demo(model, **build_kwargs)
    port = free_port()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
