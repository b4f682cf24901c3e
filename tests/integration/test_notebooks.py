"""The teaching notebooks: committed clean, executable headlessly, served by
JupyterLab, and rendered by a real browser. (Their execution times are
figures printed by ``notebooks/run_notebooks.py``, not asserted here.)

    pytest -m notebook tests/integration/test_notebooks.py      # execute every notebook (minutes)
    pytest -m browser tests/integration/test_notebooks.py       # JupyterLab in headless chromium
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from paths import NOTEBOOKS, SHARED_DATA
from servers import free_port, wait_until_answering

sys.path.insert(0, str(NOTEBOOKS))
import course_editions  # noqa: E402
import run_notebooks  # noqa: E402
import sync_notebooks  # noqa: E402

sys.path.pop(0)
NAMES = run_notebooks.notebook_names()
CHROMIUM = "/usr/bin/chromium"
VENV_BIN = str(Path(sys.executable).parent)
# A hang guard for one whole notebook, not a time limit: a stalled cell already fails after
# run_notebooks.CELL_TIMEOUT_S; 05 with an empty result cache took 629 s at a load of 10-16.
NOTEBOOK_HANG_GUARD_S = 1200
RERUN_TESTED = {"05", "06", "07"}  # their rerun is cheap (05 reads its cache) or was broken (06, 07)


def test_the_suite_is_complete():
    # Every test below is parametrised over NAMES (the notebooks/NN_*.ipynb on disk), so a new notebook is
    # covered as soon as it exists; this says which ones must exist, each number once.
    numbers = [n[:2] for n in NAMES]
    assert len(numbers) == len(set(numbers)), f"two notebooks share a number: {NAMES}"
    assert {"00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"} <= set(numbers), NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name} cell {i} has outputs: strip them before committing"
            assert cell.execution_count is None, f"{name} cell {i} has an execution count"
    assert "widgets" not in nb.metadata, f"{name} stores widget state"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_follows_the_skeleton(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    first = nb.cells[0].source
    assert first.startswith("# ") and "**You will learn**" in first and "\n> " in first
    assert "\n**Prerequisites**: " in first and re.search(r"\n\*\*Time\*\*: about \d+ minutes", first), \
        f"{name}: the first cell says what to read before and how long it takes"
    setup = nb.cells[next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")].source
    for word in ("SEED", "DEVICE", "FAST", "DATA_ROOT", "CATEGORY", "PATCHCORE_DATA_ROOT"):
        assert word in setup, f"{name}: the setup cell lacks {word}"
    assert sum("FAST = " in c.source for c in nb.cells) == 1, f"{name}: exactly one setup cell"
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"]
    assert headings.index("## Summary") + 1 == headings.index("## Exercises"), \
        f"{name}: a Summary, then the Exercises"
    sections = [h for h in headings if h.startswith("## ")]
    # (the capstone, 11, assembles the learner's functions in a section of its own after the exercises)
    assert sections[-1] == "## Further reading" and sections.index("## Exercises") >= len(sections) - 3, \
        f"{name}: the Exercises, then the Further reading, end the notebook"
    assert nb.cells[-1].source.startswith("## Further reading") and "\n**Next**: " in nb.cells[-1].source, \
        f"{name}: the last cell is the Further reading, and says what to read next"
    assert any("assert " in c.source for c in nb.cells if c.cell_type == "code")


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


@pytest.mark.parametrize("name", NAMES)
def test_every_exercise_has_a_starter_a_solution_and_a_check(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    start = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Exercises"))
    # The exercises run to the end, or to a section that uses them (the capstone, 11, assembles the
    # learner's functions into PatchCore after its exercises).
    end = next((i for i, c in enumerate(nb.cells[start + 1:], start + 1) if c.source.startswith("## ")),
               len(nb.cells))
    exercise_tags = {"exercise", "solution", "check"}  # (show-code and notes are the decks' tags)
    assert not any(exercise_tags & set(tags(c)) for c in nb.cells[:start] + nb.cells[end:]), \
        f"{name}: exercise cells outside ## Exercises"
    # Each exercise: its question (### n.), a starter, a solution, a check, then the answer text.
    pattern = [("markdown", []), ("code", ["exercise"]), ("code", ["solution"]), ("code", ["check"]),
               ("markdown", ["solution"])]
    rest = [(c.cell_type, tags(c)) for c in nb.cells[start + 1:end]]
    assert len(rest) >= 2 * len(pattern) and rest == pattern * (len(rest) // len(pattern)), \
        f"{name}: each exercise is question, exercise, solution, check, answer cells"
    for i, cell in enumerate(nb.cells[start + 1:end], start + 1):
        if "check" in tags(cell):
            assert f'exercises.check_exercise("{name[:2]}.' in cell.source or "quiz.check(" in cell.source, \
                f"{name} cell {i}: a check calls exercises.check_exercise (teaching.checks computes the " \
                f"expected answer, out of the learner's view) or teaching.quiz.check"
        if "exercise" in tags(cell):
            assert "..." in cell.source or "NotImplementedError" in cell.source, \
                f"{name} cell {i}: a starter leaves the answer open (... or NotImplementedError)"
    assert "<details>" not in "".join(c.source for c in nb.cells), f"{name}: answers go in solution cells"


@pytest.mark.parametrize("name", NAMES)
def test_every_notebook_ends_its_exercises_with_one_quiz(name):
    from patchcore_core.teaching.quiz_bank import QUESTIONS

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    questions = [c.source for c in nb.cells if re.match(r"### \d+\. ", c.source)]
    quizzes = [q for q in questions if re.match(r"### \d+\. Quiz: ", q)]
    assert len(quizzes) == 1 and quizzes[0] == questions[-1], f"{name}: one quiz, the last exercise"
    k = re.match(r"### (\d+)\.", quizzes[0]).group(1)
    qid, variable = f"{name[:2]}.{k}", f"quiz_{k}"
    question = QUESTIONS[qid]
    for letter, option in question.options.items():  # the options the learner reads are the ones checked
        assert f"- **{letter}.** {option.text}" in quizzes[0], f"{qid}: option {letter} is not quiz_bank's"
    at = next(i for i, c in enumerate(nb.cells) if c.source == quizzes[0])
    starter, solution, check = (c.source for c in nb.cells[at + 1:at + 4])
    assert starter.startswith(f"{variable} = ...") and solution == f'{variable} = "{question.key}"'
    assert f'teaching.quiz.check({variable}, "{qid}"' in check
    assert (NOTEBOOKS / "grading" / "tests" / f"{qid}.py").exists(), f"{qid}: the grader's test file"


@pytest.mark.parametrize("name", NAMES)
def test_student_edition_has_no_solutions(name):
    nb = course_editions.student_edition(nbformat.read(NOTEBOOKS / name, as_version=4))
    assert not [c for c in nb.cells if "solution" in tags(c)]
    text = "\n".join(c.source for c in nb.cells)
    assert "*Answer.*" not in text and "<details>" not in text
    assert sum("exercise" in tags(c) for c in nb.cells) == sum("check" in tags(c) for c in nb.cells) >= 2
    assert "jupytext" not in nb.metadata, "a handed-out copy is not paired with a .py"


def test_make_student_writes_every_notebook(tmp_path):
    written = course_editions.write_student(NAMES, tmp_path)
    assert [p.name for p in written] == NAMES
    nb = nbformat.read(written[2], as_version=4)
    original = nbformat.read(NOTEBOOKS / NAMES[2], as_version=4)
    assert len(nb.cells) == len(original.cells) - sum("solution" in tags(c) for c in original.cells)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_pair_is_in_sync(name):
    py, ipynb = NOTEBOOKS / name.replace(".ipynb", ".py"), NOTEBOOKS / name
    assert sync_notebooks.differences(py, ipynb) == [], "run `make notebooks` and commit both files"


def test_sync_carries_an_edit_of_the_source_into_the_notebook(tmp_path):
    import jupytext

    for f in ("00_quickstart.py", "00_quickstart.ipynb", "jupytext.toml"):
        shutil.copy(NOTEBOOKS / f, tmp_path / f)
    py, ipynb = tmp_path / "00_quickstart.py", tmp_path / "00_quickstart.ipynb"
    ids = [c.id for c in nbformat.read(ipynb, as_version=4).cells]
    py.write_text(py.read_text().replace("# PatchCore (Roth", "# Edited. PatchCore (Roth", 1))
    os.utime(ipynb, (1, 1))  # the .py is the newer side, as after editing it
    assert sync_notebooks.differences(py, ipynb) == [
        "00_quickstart.py and 00_quickstart.ipynb hold different cells"]
    sync_notebooks.sync(py, ipynb)
    assert sync_notebooks.differences(py, ipynb) == []
    nb = nbformat.read(ipynb, as_version=4)
    assert nb.cells[1].source.startswith("Edited. PatchCore (Roth")
    assert [c.id for c in nb.cells] == ids, "cell ids are kept, so diffs of the .ipynb stay small"
    assert jupytext.read(py).cells[1].source == nb.cells[1].source


def test_sync_strips_outputs_saved_in_the_notebook(tmp_path):
    for f in ("00_quickstart.py", "00_quickstart.ipynb", "jupytext.toml"):
        shutil.copy(NOTEBOOKS / f, tmp_path / f)
    py, ipynb = tmp_path / "00_quickstart.py", tmp_path / "00_quickstart.ipynb"
    nb = nbformat.read(ipynb, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    code.execution_count = 3
    nbformat.write(nb, ipynb)
    assert sync_notebooks.differences(py, ipynb) == ["00_quickstart.ipynb has outputs in 1 cells"]
    sync_notebooks.sync(py, ipynb)
    assert sync_notebooks.differences(py, ipynb) == []
    assert py.stat().st_mtime >= ipynb.stat().st_mtime, "the source stays the newer side"


@pytest.fixture(scope="session")
def builtin_cache(tmp_path_factory):
    """One data and results cache for every run on the built-in data, solution and student editions:
    the built-in images are written once and 05's sweeps computed once (the editions differ only
    after ## Exercises, so a student run that finds them cached still runs every cell)."""
    return tmp_path_factory.mktemp("notebook-cache")


def both_editions(nb):
    """The student edition, then each exercise's solution and its check once more, in order.

    One run of it shows both that the edition handed out runs from top to bottom with every
    check unanswered and that every solution passes its check: the two editions share every
    cell before ## Exercises, which is where the time goes. Returns ``(notebook, copies)``:
    ``copies`` maps the id of each solution and check cell to the id of its copy at the end."""
    import copy

    combined = course_editions.student_edition(nb)
    copies = {}
    for cell, following in zip(nb.cells, nb.cells[1:]):
        if cell.cell_type == "code" and "solution" in tags(cell):
            assert "check" in tags(following), "a solution's code is followed by its check"
            for original in (cell, following):
                twin = copy.deepcopy(original)
                twin.id = f"{original.id}-again"[:64]
                twin.outputs, twin.execution_count = [], None
                combined.cells.append(twin)
                copies[original.id] = twin.id
    return combined, copies


def solution_edition_view(nb, executed, copies):
    """The committed notebook with the outputs its cells got in the combined run (a solution or
    check cell: those of its copy at the end), as a run of the solution edition would give them."""
    import copy

    found = {c.id: c for c in executed.cells}
    view = copy.deepcopy(nb)
    for cell in view.cells:
        if cell.cell_type == "code":
            ran = found[copies.get(cell.id, cell.id)]
            cell.outputs, cell.execution_count = ran.outputs, ran.execution_count
            cell.metadata["execution"] = ran.metadata.get("execution", {})
    return view


def test_both_editions_run_covers_every_cell_once_and_every_solution_after_its_starter():
    nb = nbformat.read(NOTEBOOKS / NAMES[2], as_version=4)
    combined, copies = both_editions(nb)
    student = course_editions.student_edition(nb)
    assert [c.source for c in combined.cells[:len(student.cells)]] == [c.source for c in student.cells]
    solutions = [c for c in nb.cells if c.cell_type == "code" and "solution" in tags(c)]
    assert len(copies) == 2 * len(solutions) == len(combined.cells) - len(student.cells)
    tail = combined.cells[len(student.cells):]
    assert [c.source for c in tail[::2]] == [c.source for c in solutions]
    assert all("check" in tags(c) for c in tail[1::2])
    assert len({c.id for c in combined.cells}) == len(combined.cells)
    nbformat.validate(combined)


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(NOTEBOOK_HANG_GUARD_S)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, tmp_path, builtin_cache):
    """The student edition runs headless with every check unanswered, then every solution passes its
    check (one execution: both_editions)."""
    original = nbformat.read(NOTEBOOKS / name, as_version=4)
    combined, copies = both_editions(original)
    path = tmp_path / name
    nbformat.write(combined, path)
    # The notebooks once broken by running a cell again after Run All also run every cell a second time,
    # in the same kernel (a learner going back); `run_notebooks.py --rerun` does it for all of them.
    nb, seconds = run_notebooks.execute(path, builtin_cache, fast=True, rerun=name[:2] in RERUN_TESTED)
    cell, cell_s = run_notebooks.slowest_cell(nb)
    print(f"\n{name}: both editions executed in {seconds:.1f} s; slowest cell {cell} ({cell_s:.1f} s)")
    assert 0 < cell_s < seconds
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    n_plots = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                  for o in c.get("outputs", []))
    assert n_plots >= 1, f"{name} drew no plot"
    n_checks = len(copies) // 2
    student_part = nbformat.v4.new_notebook(cells=nb.cells[:len(nb.cells) - len(copies)])
    results = run_notebooks.check_results(student_part)
    assert len(results) >= 2 and all(r.startswith("not answered yet") for r in results), results
    # The solution edition: every check passes.
    solved = solution_edition_view(original, nb, copies)
    results = run_notebooks.check_results(solved)
    assert len(results) >= n_checks >= 2 and all(r == "correct" for r in results), results
    (tmp_path / "executed.ipynb").write_text(nbformat.writes(solved))
    # The deck test (test_slides_browser.py) builds its decks from this run instead of running it again.
    course_editions.keep_executed(name, solved, course_editions.BUILD / "test-decks", True, builtin_cache)


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(NOTEBOOK_HANG_GUARD_S)
def test_your_own_data_runs_with_only_a_folder_of_good_images(builtin_root, tmp_path, monkeypatch):
    # Notebook 06's own use case: PATCHCORE_OWN_GOOD and nothing else, file names of any kind.
    good = tmp_path / "my photos"
    good.mkdir()
    for i, path in enumerate(sorted((builtin_root / "brick" / "train" / "good").iterdir())[:10]):
        shutil.copy(path, good / f"good_{i}{path.suffix}" if i % 2 else good / f"IMG {i}{path.suffix}")
    monkeypatch.setenv("PATCHCORE_OWN_GOOD", str(good))
    monkeypatch.delenv("PATCHCORE_OWN_TEST", raising=False)
    nb, _ = run_notebooks.execute("06_your_own_data.ipynb", tmp_path / "cache")
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "2 test images: no test folder: 2 of the good images held back from training" in text
    assert "flagged: 0/0 defective" in text and "only one kind of image in the test set" in text
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]


REAL_DATA = SHARED_DATA
# Every real set (its README): root, category, and how many images of each kind to keep (None: all;
# magnetic_tile's 761 training images and five defect kinds are too many for a FAST run of every notebook).
REAL_SETS = [("mvtec_grid_mini", "grid", None), ("hazelnut_toy", "hazelnut_toy", None),
             ("magnetic_tile", "mtd", 15)]


def test_sample_category_keeps_n_images_per_kind_with_their_masks(tmp_path):
    src = tmp_path / "src" / "cat"
    kinds = [("train/good", ["a", "b", "c"]), ("test/good", ["g1", "g2"]), ("test/dent", ["d1", "d2"])]
    for folder, names in kinds:
        (src / folder).mkdir(parents=True)
        for n in names:
            (src / folder / f"{n}.png").write_bytes(b"x")
    (src / "ground_truth" / "dent").mkdir(parents=True)
    for n in ("d1", "d2"):
        (src / "ground_truth" / "dent" / f"{n}_mask.png").write_bytes(b"m")
    root = run_notebooks.sample_category(tmp_path / "src", "cat", tmp_path / "out", 1)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    assert files == ["cat/ground_truth/dent/d1_mask.png", "cat/test/dent/d1.png", "cat/test/good/g1.png",
                     "cat/train/good/a.png"]
    with pytest.raises(FileNotFoundError, match="not a category"):
        run_notebooks.sample_category(tmp_path / "src", "nothing", tmp_path / "out2", 1)


def _real_cases():
    """Each notebook on one real set, the sets taken in turn, so one run covers every notebook and every
    set; PATCHCORE_ALL_REAL_SETS=1 runs every notebook on every set (three times as long)."""
    if os.environ.get("PATCHCORE_ALL_REAL_SETS"):
        return [(n, *s) for n in NAMES for s in REAL_SETS]
    return [(n, *REAL_SETS[i % len(REAL_SETS)]) for i, n in enumerate(NAMES)]


@pytest.mark.realdata
@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(NOTEBOOK_HANG_GUARD_S)
@pytest.mark.parametrize("name,root,category,sample", _real_cases())
def test_notebook_runs_on_real_data(name, root, category, sample, tmp_path):
    if not (REAL_DATA / root / category).is_dir():
        pytest.skip(f"no {REAL_DATA / root / category}")
    data_root = REAL_DATA / root
    if sample:
        data_root = run_notebooks.sample_category(data_root, category, tmp_path / "sample", sample)
    nb, seconds = run_notebooks.execute(name, tmp_path / "cache", fast=True, data=(data_root, category))
    print(f"\n{name} on {root}/{category}: {seconds:.1f} s")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, "\n".join(e["evalue"] for e in errors)
    assert all(r == "correct" for r in run_notebooks.check_results(nb))


def test_every_notebook_run_is_marked_notebook_and_slow():
    # `-m "not notebook"` (the quick suite) must leave out every test that executes a notebook; marks put
    # on a helper instead of the test are silently lost.
    runs = [test_notebook_executes, test_notebook_runs_on_real_data,
            test_your_own_data_runs_with_only_a_folder_of_good_images]
    for test in runs:
        marks = {m.name for m in getattr(test, "pytestmark", [])}
        assert {"notebook", "slow", "timeout"} <= marks, f"{test.__name__} has only the marks {sorted(marks)}"
    assert "realdata" in {m.name for m in test_notebook_runs_on_real_data.pytestmark}


def _notebook(folder: Path, *sources: str) -> str:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, folder / "99_probe.ipynb")
    return "99_probe.ipynb"


@pytest.mark.slow
def test_a_stalled_cell_fails_the_run_at_once_and_is_not_rerun(tmp_path, monkeypatch):
    # A cell with no reply within the cell timeout, as a stalled kernel would give.
    from nbclient.exceptions import CellTimeoutError

    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(run_notebooks, "CELL_TIMEOUT_S", 2)
    name = _notebook(tmp_path, "import time\nopen('runs', 'a').write('x')\ntime.sleep(30)")
    with pytest.raises(CellTimeoutError, match="timed out"):
        run_notebooks.execute(name, tmp_path / "cache")
    assert (tmp_path / "runs").read_text() == "x"


def _swallow_wake_ups(client, seen: dict):
    """Block the client's event loop until the kernel's reply and outputs sit in its sockets, then take the
    sockets' ZMQ_FD wake-ups with a raw libzmq call, as a send on a synchronous shadow of the socket
    (jupyter_client's Session.send) does: the loop then sleeps on sockets that hold messages."""
    import zmq

    shell, iopub = (zmq.Socket.shadow(ch.socket.underlying) for ch in (client.kc.shell_channel,
                                                                        client.kc.iopub_channel))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not shell.get(zmq.EVENTS) & zmq.POLLIN:
        time.sleep(0.05)
    time.sleep(0.5)  # the outputs and the idle status come with the reply
    seen["reply pending"] = bool(shell.get(zmq.EVENTS) & zmq.POLLIN)
    seen["output pending"] = bool(iopub.get(zmq.EVENTS) & zmq.POLLIN)


@pytest.mark.slow
def test_a_lost_socket_wake_up_costs_neither_the_reply_nor_the_output(tmp_path, monkeypatch):
    # The stall seen in headless runs: the kernel idle, its reply unread in the client's socket because
    # the socket's edge-triggered wake-up was taken. The reply must not wait for the cell timeout,
    # and the output must not be dropped after nbclient's 4 s iopub_timeout.
    import asyncio

    monkeypatch.setattr(run_notebooks, "CELL_TIMEOUT_S", 30)
    # The cell's 3 s leave the client time to wait on its sockets before the wake-ups are taken.
    cell = nbformat.v4.new_code_cell("import time\ntime.sleep(3)\nprint('done')")
    nb = nbformat.v4.new_notebook(cells=[cell])
    client = run_notebooks.notebook_client(nb)
    seen = {}
    client.on_cell_execute = lambda cell, cell_index: asyncio.get_running_loop().call_later(
        0.5, _swallow_wake_ups, client, seen)
    client.execute(env=run_notebooks.kernel_env(tmp_path / "cache"), stderr=subprocess.DEVNULL)
    assert seen == {"reply pending": True, "output pending": True}  # the wake-ups were really lost
    assert [o.get("text") for o in nb.cells[0].outputs] == ["done\n"]


@pytest.mark.slow
def test_an_interactive_widget_syncing_its_state_as_the_reply_arrives_does_not_stall(tmp_path, monkeypatch):
    # The trigger in notebooks 01, 02, 03 and 07: widgets.interactive prints into an Output widget;
    # nbclient's stand-in for it syncs its state back to the kernel (OutputWidget.sync_state), a send on
    # the shell socket, while the client waits there for the cell's reply. When the reply has just
    # arrived, that send takes its wake-up, and the stock client reads the reply at the cell timeout.
    # Here the sync waits for the reply to arrive, so the send always meets it.
    import zmq
    from nbclient.output_widget import OutputWidget

    sync_state = OutputWidget.sync_state
    met = []

    def sync_state_when_the_reply_is_in(widget):
        if not met:
            shell = zmq.Socket.shadow(widget.kernel_client.shell_channel.socket.underlying)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not shell.get(zmq.EVENTS) & zmq.POLLIN:
                time.sleep(0.05)
            met.append(bool(shell.get(zmq.EVENTS) & zmq.POLLIN))
        sync_state(widget)

    monkeypatch.setattr(OutputWidget, "sync_state", sync_state_when_the_reply_is_in)
    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(run_notebooks, "CELL_TIMEOUT_S", 60)
    # The widget prints as it is made; the sleep lets the client take that output before the reply comes.
    name = _notebook(tmp_path, "import time\n"
                               "import ipywidgets as widgets\n"
                               "def show(value):\n"
                               "    print(value)\n"
                               "shown = widgets.interactive(show, value=widgets.IntSlider(7))\n"
                               "time.sleep(2)\n"
                               "shown")
    nb, seconds = run_notebooks.execute(name, tmp_path / "cache")
    assert met == [True]
    # The stock client reads the reply exactly at the cell timeout, and then goes on as if nothing happened.
    assert seconds < run_notebooks.CELL_TIMEOUT_S


@pytest.mark.slow
def test_a_cell_that_raises_is_not_rerun(tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", tmp_path)
    name = _notebook(tmp_path, "open('runs', 'a').write('x')\nraise ValueError('broken notebook')")
    with pytest.raises(CellExecutionError, match="broken notebook"):
        run_notebooks.execute(name, tmp_path / "cache")
    assert (tmp_path / "runs").read_text() == "x"


@pytest.mark.slow
def test_rerun_runs_every_cell_again_in_the_same_kernel_and_names_the_one_that_breaks(tmp_path, monkeypatch):
    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", tmp_path)
    fine = _notebook(tmp_path, "n = 0", "n += 1\nprint(n)", "open('runs', 'a').write(str(n))")
    nb, _ = run_notebooks.execute(fine, tmp_path / "cache", rerun=True)
    assert nb.cells[1].outputs[0]["text"] == "1\n"  # Run All's outputs are the ones returned
    assert (tmp_path / "runs").read_text() == "11"  # the last cell ran twice, in the same kernel
    # a name rebound further down (07's `flat`, once a tensor, then a list) breaks the cell above on a rerun
    name = _notebook(tmp_path, "items = [1, 2]", "total = sum(items)", "items = {'a': 1}")
    run_notebooks.execute(name, tmp_path / "cache")
    with pytest.raises(run_notebooks.RerunError, match=r"cell 1 \('total = sum\(items\)'\).*TypeError"):
        run_notebooks.execute(name, tmp_path / "cache", rerun=True)


def test_as_lab_keeps_the_environments_cache_and_data(monkeypatch):
    monkeypatch.setenv("PATCHCORE_CACHE", "/somewhere/cache")
    monkeypatch.setenv("PATCHCORE_DATA_ROOT", "/data/mvtec")
    monkeypatch.setenv("CI", "1")
    lab = run_notebooks.kernel_env(None, fast=False)
    assert lab["PATCHCORE_CACHE"] == "/somewhere/cache" and lab["PATCHCORE_DATA_ROOT"] == "/data/mvtec"
    assert "CI" not in lab
    headless = run_notebooks.kernel_env(Path("/tmp/c"))
    assert headless["PATCHCORE_CACHE"] == "/tmp/c" and headless["CI"]
    assert "PATCHCORE_DATA_ROOT" not in headless


def test_slowest_cell_reads_nbclients_timings():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"),
                                         nbformat.v4.new_code_cell("a"), nbformat.v4.new_code_cell("b")])
    for cell, (start, end) in zip(nb.cells[1:], [("00.5", "01.0"), ("01.0", "04.5")]):
        cell.metadata["execution"] = {"iopub.status.busy": f"2026-01-01T10:00:{start}Z",
                                      "iopub.status.idle": f"2026-01-01T10:00:{end}Z"}
    assert run_notebooks.slowest_cell(nb) == (2, 3.5)


def readme_lab_command() -> list[str]:
    """The JupyterLab command of notebooks/README.md (the line starting with 'jupyter lab')."""
    text = (NOTEBOOKS / "README.md").read_text()
    line = next(l.strip() for l in text.splitlines() if l.strip().startswith("jupyter lab"))
    return line.split()


class JupyterLab:
    """The README's ``jupyter lab`` command on a free port, without a token."""

    def __init__(self, tmp_path: Path, root: Path = NOTEBOOKS):
        self.port = free_port()
        cmd = readme_lab_command()
        cmd = [os.path.join(VENV_BIN, "jupyter")] + cmd[1:] + [
            "--no-browser", "--allow-root", f"--port={self.port}", "--ServerApp.token=",
            "--ServerApp.password=", "--ServerApp.ip=127.0.0.1", "--LabApp.news_url=None",
            "--ServerApp.disable_check_xsrf=True", "--LabServerApp.check_for_updates_class="
            "jupyterlab.NeverCheckForUpdate"]
        cmd = [c.replace("--notebook-dir=notebooks", f"--notebook-dir={root}") for c in cmd]
        env = run_notebooks.kernel_env(tmp_path / "cache")
        env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
        env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "lab-settings")
        env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "lab-workspaces")
        # Render every cell (JupyterLab 4 virtualises cells outside the view) and ask about no news.
        settings = tmp_path / "lab-settings" / "@jupyterlab"
        for ext, conf in [("notebook-extension/tracker", {"windowingMode": "none"}),
                          ("apputils-extension/notification", {"fetchNews": "false"})]:
            (settings / ext).parent.mkdir(parents=True, exist_ok=True)
            (settings / ext).with_suffix(".jupyterlab-settings").write_text(json.dumps(conf))
        self.log = open(tmp_path / "jupyterlab.log", "w")
        self.proc = subprocess.Popen(cmd, cwd=NOTEBOOKS.parent, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            wait_until_answering(self.url + "/api/status", self.proc, timeout_s=90)
        except RuntimeError:
            log = (tmp_path / "jupyterlab.log").read_text()[-2000:]
            raise RuntimeError(f"jupyter lab exited: {log}") from None
        except TimeoutError:
            self.stop()
            raise

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def lab(tmp_path):
    server = JupyterLab(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def lab_on_copy(tmp_path):
    """JupyterLab on a copy of the notebooks: running cells in the browser
    (and JupyterLab's autosave) must never write outputs into the repository."""
    root = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    server = JupyterLab(tmp_path, root)
    yield server
    server.stop()


@pytest.mark.slow
def test_readme_jupyterlab_command_serves_the_notebooks(lab):
    assert readme_lab_command()[:2] == ["jupyter", "lab"]
    listing = lab.get("/api/contents/")
    names = {item["name"] for item in listing["content"]}
    assert set(NAMES) <= names
    nb = lab.get("/api/contents/00_quickstart.ipynb")
    assert nb["type"] == "notebook" and nb["content"]["cells"][0]["source"].startswith("# 00")
    assert "python3" in lab.get("/api/kernelspecs")["kernelspecs"]
    assert lab.proc.poll() is None


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quickstart_runs_in_jupyterlab_in_chromium(lab_on_copy, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    lab = lab_on_copy
    shot = tmp_path / "quickstart.png"
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"{lab.url}/lab/tree/00_quickstart.ipynb", wait_until="domcontentloaded",
                      timeout=90_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            time.sleep(5)  # "idle" shows before the kernel session is fully connected
            page.locator(".jp-Notebook .jp-Cell").first.click()
            # Run > Run All Cells, as a learner would.
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
            page.wait_for_selector(".jp-OutputArea-output img", timeout=300_000)
            deadline = time.time() + 300
            while time.time() < deadline:
                prompts = page.eval_on_selector_all(".jp-CodeCell .jp-InputPrompt",
                                                    "els => els.map(e => e.textContent.trim())")
                if prompts and all(re.fullmatch(r"\[\d+\]:", t) for t in prompts):
                    break
                time.sleep(1)
            else:
                pytest.fail(f"cells did not finish: prompts {prompts}")
            errors = page.query_selector_all(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
            assert errors == [], errors[0].inner_text()[:2000]
            img = page.query_selector(".jp-OutputArea-output img")
            assert img.bounding_box()["width"] > 300
            # Scroll so the plot and the cells around it are in view.
            page.evaluate("el => el.scrollIntoView({block: 'center'})", img)
            time.sleep(1)
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    shutil.copy(shot, "/tmp/notebook_screenshot.png")


BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_teacher_edits_notebook_02_in_jupyterlab(lab_on_copy, tmp_path):
    """The teacher's seat: open 02 in JupyterLab (jupytext pairs it with its .py), change a sentence and a
    code cell, save; the .py source changes, the pair stays in sync, and the student edition has the edit."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    import jupytext

    root = tmp_path / "notebooks"
    name = "02_memory_bank_and_coreset"
    py, ipynb = root / f"{name}.py", root / f"{name}.ipynb"
    py_before = py.read_text()
    sentence, code_line = "A sentence a teacher added.", "print('a line a teacher added')"
    with sync_api.sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{lab_on_copy.url}/lab/tree/{name}.ipynb", wait_until="domcontentloaded",
                      timeout=90_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            time.sleep(3)
            cells = page.locator(".jp-Notebook .jp-Cell")
            # A sentence at the end of the second Markdown cell ("How large is the full memory bank?").
            intro = page.locator(".jp-Notebook .jp-MarkdownCell").nth(1)
            intro.dblclick()
            editor = intro.locator(".cm-content")
            editor.click()
            page.keyboard.press("Control+End")
            page.keyboard.type(" " + sentence)
            page.keyboard.press("Escape")
            # A line at the end of the first code cell after the setup cell (the one fitting the model).
            code = page.locator(".jp-Notebook .jp-CodeCell").nth(1)
            code.locator(".cm-content").click()
            page.keyboard.press("Control+End")
            page.keyboard.press("Enter")
            page.keyboard.type(code_line)
            page.keyboard.press("Escape")
            page.keyboard.press("Control+s")
            deadline = time.time() + 30
            while time.time() < deadline and py.read_text() == py_before:
                time.sleep(0.5)
            page.screenshot(path=str(tmp_path / "teacher.png"))
            assert cells.count() > 10
        finally:
            browser.close()
    py_after = py.read_text()
    assert py_after != py_before, "saving in JupyterLab did not update the .py source"
    assert f" {sentence}" in py_after and code_line in py_after
    assert sync_notebooks.differences(py, ipynb) == [], "JupyterLab saved both files of the pair"
    assert all(sync_notebooks.differences(*pair) == [] for pair in sync_notebooks.pairs(root))
    # Only the two edits changed in the source.
    changed = [l for l in py_after.splitlines() if l not in py_before.splitlines()]
    assert len(changed) == 2, changed
    student = course_editions.student_edition(nbformat.read(ipynb, as_version=4))
    text = "\n".join(c.source for c in student.cells)
    assert sentence in text and code_line in text
    source_cells = jupytext.read(py).cells
    assert source_cells[2].source.endswith(sentence) and source_cells[3].source.endswith(code_line)
    shutil.copy(tmp_path / "teacher.png", "/tmp/teacher_screenshot.png")
