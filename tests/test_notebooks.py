"""The teaching notebooks: committed clean, executable headlessly, served by
JupyterLab, and rendered by a real browser. (Their execution times are
figures printed by ``notebooks/run_notebooks.py``, not asserted here.)

    pytest -m notebook tests/test_notebooks.py      # execute every notebook (minutes)
    pytest -m browser tests/test_notebooks.py       # JupyterLab in headless chromium
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

from demo.testing import free_port, wait_until_answering

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
import run_notebooks  # noqa: E402
import sync_notebooks  # noqa: E402

sys.path.pop(0)
NAMES = run_notebooks.notebook_names()
CHROMIUM = "/usr/bin/chromium"
VENV_BIN = str(Path(sys.executable).parent)


def test_the_suite_is_complete():
    assert [n[:2] for n in NAMES] == ["00", "01", "02", "03", "04", "05", "06"]


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
    setup = nb.cells[next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")].source
    for word in ("SEED", "DEVICE", "FAST", "DATA_ROOT", "CATEGORY", "PATCHCORE_DATA_ROOT"):
        assert word in setup, f"{name}: the setup cell lacks {word}"
    assert sum("FAST = " in c.source for c in nb.cells) == 1, f"{name}: exactly one setup cell"
    tail = "\n".join(c.source for c in nb.cells[-2:])
    assert "## Summary" in tail and "## Exercises" in tail and "<details>" in tail
    assert any("assert " in c.source for c in nb.cells if c.cell_type == "code")


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


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(2 * run_notebooks.CELL_TIMEOUT_S)  # a hang guard only
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, tmp_path):
    nb, seconds = run_notebooks.execute(name, tmp_path / "cache", fast=True)
    cell, cell_s = run_notebooks.slowest_cell(nb)
    print(f"\n{name}: executed in {seconds:.1f} s; slowest cell {cell} ({cell_s:.1f} s)")
    assert 0 < cell_s < seconds
    (tmp_path / "executed.ipynb").write_text(nbformat.writes(nb))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    n_plots = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                  for o in c.get("outputs", []))
    assert n_plots >= 1, f"{name} drew no plot"


def _notebook(folder: Path, *sources: str) -> str:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, folder / "99_probe.ipynb")
    return "99_probe.ipynb"


@pytest.mark.slow
def test_a_stalled_cell_is_rerun_once_in_a_fresh_kernel(tmp_path, monkeypatch):
    # The first run sleeps past the cell timeout, as a stalled reply would; the rerun does not.
    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(run_notebooks, "CELL_TIMEOUT_S", 2)
    name = _notebook(tmp_path, "import pathlib, time\n"
                               "first = not pathlib.Path('ran').exists()\n"
                               "pathlib.Path('ran').touch()\n"
                               "time.sleep(30 if first else 0)\n"
                               "print('done')")
    with pytest.warns(RuntimeWarning, match="99_probe.ipynb: a cell got no reply within 2 s"):
        nb, _ = run_notebooks.execute(name, tmp_path / "cache")
    assert nb.cells[0].outputs[0]["text"] == "done\n"


@pytest.mark.slow
def test_a_cell_that_raises_is_not_rerun(tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", tmp_path)
    name = _notebook(tmp_path, "open('runs', 'a').write('x')\nraise ValueError('broken notebook')")
    with pytest.raises(CellExecutionError, match="broken notebook"):
        run_notebooks.execute(name, tmp_path / "cache")
    assert (tmp_path / "runs").read_text() == "x"


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
