"""Execute the notebooks headlessly, as CI does, and print how long each took.

    python notebooks/run_notebooks.py                 # all, FAST mode, built-in data
    python notebooks/run_notebooks.py 02 05 --full    # some, with the full sweeps
    python notebooks/run_notebooks.py --out executed  # keep copies with their outputs
    python notebooks/run_notebooks.py --data ~/data/magnetic_tile mtd --sample 30  # real data, subsampled
    python notebooks/run_notebooks.py --rerun         # then each code cell once more, last first, same kernel
    python notebooks/run_notebooks.py 05 --as-lab     # as JupyterLab runs it: fills the cache a class reads

Teachers: run this once on the machine you will teach on. The goal is under
3 minutes per notebook in FAST mode on 2 CPU cores; that is a figure printed
here (and by ``make benchmark``), not a timed test, because a busy CI machine
can be several times slower than a quiet one.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent
GOAL_S = 180  # each notebook, FAST mode, 2 CPU cores
CELL_TIMEOUT_S = 180  # the slowest cell takes 2 minutes on a heavily loaded 2-core machine
WAKE_CHECK_S = 1.0  # the longest a message may sit unread in the client's socket


def notebook_names() -> list[str]:
    return sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def kernel_env(cache: Path | None, fast: bool = True, data: tuple[Path, str] | None = None) -> dict:
    """The environment a headless kernel runs in: FAST mode (``CI`` set), a
    private data cache, the built-in data (or ``data = (root, category)``),
    and this interpreter's folder first on PATH so that the ``python3``
    kernel is this environment's python.

    ``cache=None``: as ``make lab`` starts a kernel instead, this process's
    own ``PATCHCORE_CACHE``, ``PATCHCORE_DATA_ROOT`` and ``PATCHCORE_CATEGORY``
    (or their defaults), no FAST mode: the results it caches are the ones
    JupyterLab will read."""
    env = dict(os.environ)
    env.pop("CI", None)
    if fast:
        env["CI"] = "1"
    env.update(MPLBACKEND="module://matplotlib_inline.backend_inline",
               PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
               HF_HUB_OFFLINE="1")
    if cache is None:
        return env
    env["PATCHCORE_CACHE"] = str(cache)
    env.pop("PATCHCORE_DATA_ROOT", None)
    env.pop("PATCHCORE_CATEGORY", None)
    if data:
        env.update(PATCHCORE_DATA_ROOT=str(data[0]), PATCHCORE_CATEGORY=str(data[1]))
    return env


def sample_category(root: Path, category: str, dest: Path, n: int) -> Path:
    """A copy of ``root/category`` with at most ``n`` training images and
    ``n`` test images of each kind (the first ones, by name), as symbolic
    links under ``dest``; returns the new root. For large sets (hundreds
    of images) whose every notebook would otherwise take many minutes."""
    src = Path(root) / category
    if not (src / "train" / "good").is_dir():
        raise FileNotFoundError(f"{src / 'train' / 'good'}: not a category in the MVTec AD layout")
    for folder in [src / "train" / "good"] + sorted(p for p in (src / "test").iterdir() if p.is_dir()):
        out = dest / category / folder.relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for image in sorted(f for f in folder.iterdir() if f.is_file())[:n]:
            (out / image.name).symlink_to(image.resolve())
            if folder.parent.name == "test" and folder.name != "good":
                for mask in (src / "ground_truth" / folder.name).glob(f"{image.stem}*"):
                    gt = dest / category / "ground_truth" / folder.name
                    gt.mkdir(parents=True, exist_ok=True)
                    (gt / mask.name).symlink_to(mask.resolve())
    return dest


@functools.cache
def wake_safe_kernel_manager():
    """nbclient's kernel manager, with a kernel client that cannot sleep on
    a message that has arrived.

    Why: ``zmq.asyncio`` wakes a waiting ``get_msg`` only on an edge of the
    socket's ``ZMQ_FD``, and a call into libzmq on the socket from outside the
    asyncio wrapper consumes a pending edge. jupyter_client's ``Session.send``
    makes such a call: it sends on a synchronous shadow of the socket. nbclient
    sends on the shell socket while it waits there for a cell's reply whenever
    an Output widget captures output (``widgets.interactive``: its
    ``OutputWidget.sync_state``); when the reply has just arrived, the send
    takes its wake-up and the reply sits unread, the kernel idle, until the
    cell timeout, when it is read as if nothing had happened.

    So the shell channel looks at its socket's events through the asyncio
    wrapper after each send, which re-arms a waiting ``get_msg``; and every
    wait is cut into slices of ``WAKE_CHECK_S``, each ending with a
    non-blocking look at the socket, so that a wake-up lost in any other way
    costs at most that (an output's would otherwise be dropped after nbclient's
    4 s ``iopub_timeout``).
    """
    from queue import Empty

    import zmq
    from jupyter_client import AsyncKernelManager
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel
    from traitlets import Type, default

    class WakeSafeChannel(AsyncZMQSocketChannel):
        def send(self, msg: dict) -> None:
            super().send(msg)
            self.socket.get(zmq.EVENTS)  # zmq.asyncio schedules a waiting get_msg if a message is in

        async def get_msg(self, timeout: float | None = None) -> dict:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = WAKE_CHECK_S if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    return await super().get_msg(timeout=min(WAKE_CHECK_S, left))
                except Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise

    class WakeSafeKernelClient(AsyncKernelClient):
        shell_channel_class = Type(WakeSafeChannel)
        iopub_channel_class = Type(WakeSafeChannel)

    class WakeSafeKernelManager(AsyncKernelManager):
        @default("client_factory")
        def _client_factory_default(self) -> type:
            return WakeSafeKernelClient

    return WakeSafeKernelManager


def notebook_client(nb):
    """The nbclient client that runs ``nb``: a ``python3`` kernel from
    :func:`wake_safe_kernel_manager`, ``notebooks/`` as its working folder,
    ``CELL_TIMEOUT_S`` for each cell."""
    from nbclient import NotebookClient

    return NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                          kernel_manager_class=wake_safe_kernel_manager(),
                          resources={"metadata": {"path": str(NOTEBOOKS)}})


def error_line(exc: Exception) -> str:
    """One line for a failed run: a cell's exception as ``Name: value``, else the error's first line
    (a timeout's says which limit it hit)."""
    if getattr(exc, "ename", None):  # nbclient's CellExecutionError
        return f"{exc.ename}: {exc.evalue}"[:200]
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


class RerunError(RuntimeError):
    """A cell that ran in Run All failed when run once more afterwards."""


async def _run_all_then_rerun(client, **kernel_args):
    """Run All in a fresh kernel, then every code cell once more in the same kernel, as a learner who
    goes back to a cell does: from the last cell up, so that each cell runs again in the state Run All
    and the cells below it left (a name that a later cell rebinds, say). Returns the notebook as Run All
    left it (the second pass's outputs are dropped); a cell that fails the second time raises
    :class:`RerunError` naming it."""
    import copy

    from nbclient.exceptions import CellExecutionError

    client.reset_execution_trackers()
    async with client.async_setup_kernel(**kernel_args):
        for index, cell in enumerate(client.nb.cells):
            await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
        run_all = copy.deepcopy(client.nb)
        for index, cell in reversed(list(enumerate(client.nb.cells))):
            if cell.cell_type != "code":
                continue
            try:
                await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except CellExecutionError as exc:
                first_line = (cell.source.splitlines() or [""])[0][:60]
                raise RerunError(f"cell {index} ({first_line!r}) fails when run again after Run All: "
                                 f"{error_line(exc)}") from exc
    return run_all


def execute(name: str | Path, cache: Path | None, fast: bool = True, data: tuple[Path, str] | None = None,
            rerun: bool = False):
    """Run every cell of ``notebooks/<name>`` (or of the notebook at a path,
    e.g. a student edition) in a fresh kernel, with :func:`notebook_client`.

    Returns ``(notebook with outputs, seconds)``. The kernel runs in
    :func:`kernel_env` (``cache=None``: as JupyterLab runs it); this process's
    own environment is left as it is. A cell that raises stops the run with
    nbclient's ``CellExecutionError``, a cell with no reply within
    ``CELL_TIMEOUT_S`` with ``CellTimeoutError``; neither is rerun, so that a
    stalled kernel fails the run loudly. ``rerun``: afterwards, every code cell
    runs once more in the same kernel, the last first (:class:`RerunError` if
    one fails).
    """
    import nbformat
    from jupyter_core.utils import run_sync

    nb = nbformat.read(name if isinstance(name, Path) else NOTEBOOKS / name, as_version=4)
    client = notebook_client(nb)
    kernel_args = {"env": kernel_env(cache, fast, data), "stderr": subprocess.DEVNULL}  # shutdown chatter
    t0 = time.perf_counter()
    if rerun:
        nb = run_sync(_run_all_then_rerun)(client, **kernel_args)
    else:
        client.execute(**kernel_args)
    return nb, time.perf_counter() - t0


def check_results(nb) -> list[str]:
    """The line each exercise check printed (cells tagged ``check``), in order."""
    lines = []
    for cell in nb.cells:
        if "check" in cell.metadata.get("tags", []):
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")
            lines += text.strip().splitlines() or ["(no output)"]
    return lines


def slowest_cell(nb) -> tuple[int, float]:
    """``(cell index, seconds)`` of the slowest code cell, from the timings
    nbclient records in each cell's metadata."""
    from datetime import datetime

    def seconds(cell) -> float:
        t = cell.metadata.get("execution", {})
        if "iopub.status.busy" not in t or "iopub.status.idle" not in t:
            return 0.0
        start, end = (datetime.fromisoformat(t[k].replace("Z", "+00:00"))
                      for k in ("iopub.status.busy", "iopub.status.idle"))
        return (end - start).total_seconds()

    return max(((i, seconds(c)) for i, c in enumerate(nb.cells) if c.cell_type == "code"),
               key=lambda pair: pair[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", metavar="NN",
                        help="notebook numbers or names to run (default: all)")
    parser.add_argument("--full", action="store_true", help="full sweeps instead of FAST mode")
    parser.add_argument("--data", nargs=2, metavar=("ROOT", "CATEGORY"), type=Path,
                        help="a data set in the MVTec AD layout instead of the built-in data")
    parser.add_argument("--sample", type=int, metavar="N",
                        help="with --data: at most N training images and N test images per kind")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="also write the executed notebooks, with their outputs, to DIR")
    parser.add_argument("--rerun", action="store_true",
                        help="after Run All, run every code cell once more in the same kernel, last first")
    parser.add_argument("--as-lab", action="store_true",
                        help="run as JupyterLab does: not FAST, this environment's PATCHCORE_CACHE and "
                             "data, so the results cached are the ones a class will read (make cache-05)")
    args = parser.parse_args(argv)
    names = [n for n in notebook_names() if not args.only or any(n.startswith(o) for o in args.only)]
    if not names:
        parser.error(f"no notebook matches {args.only}; choose from {notebook_names()}")
    failed = 0
    data = (args.data[0].resolve(), args.data[1]) if args.data else None  # the kernel runs in notebooks/
    if args.sample and not data:
        parser.error("--sample needs --data")
    if args.as_lab and (data or args.full):
        parser.error("--as-lab takes its data from PATCHCORE_DATA_ROOT and PATCHCORE_CATEGORY; never FAST")
    with tempfile.TemporaryDirectory(prefix="patchcore-notebooks-") as tmp:
        if args.sample:
            data = (sample_category(data[0], data[1], Path(tmp) / "sample", args.sample), data[1])
        for name in names:
            try:
                nb, seconds = execute(name, None if args.as_lab else Path(tmp) / "cache",
                                      fast=not (args.full or args.as_lab), data=data, rerun=args.rerun)
            except Exception as exc:  # report every notebook, then fail
                failed += 1
                print(f"{name:40s}   FAILED: {error_line(exc)}", flush=True)
                continue
            if args.out:
                import nbformat

                args.out.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, args.out / name)
            cell, cell_s = slowest_cell(nb)
            timed = not (args.full or args.as_lab or args.rerun)  # the goal is for one FAST Run All
            note = f"   over the {GOAL_S} s goal" if timed and seconds >= GOAL_S else ""
            note += "   rerun: every cell ran again" if args.rerun else ""
            results = check_results(nb)
            n_correct = sum(r == "correct" for r in results)
            note += f"   checks {n_correct}/{len(results)} correct" if results else ""
            first_line = nb.cells[cell].source.splitlines()[0][:40]
            print(f"{name:36s} {seconds:6.1f} s   slowest cell {cell_s:5.1f} s: {first_line}{note}",
                  flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
