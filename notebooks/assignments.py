"""Hand out the notebooks as graded assignments, and grade what comes back (otter-grader, no Docker).

    python notebooks/assignments.py build                       # make assignments
    python notebooks/assignments.py grade SUBMISSIONS [02 04]   # make grade SUBMISSIONS=DIR NOTEBOOKS="02 04"

``build`` writes

* ``build/assignments/student/``: what students get: each notebook without its
  solutions (as ``make student``), each check cell followed by
  ``grader.check("NN.k")``, which runs the exercise's public tests; the public
  test files in ``tests/`` (their hidden cases removed); a README;
* ``build/assignments/autograder/autograder.zip``: otter's configuration and
  every test file, hidden cases included: the grader's, never handed out.

``grade`` runs ``otter run`` (in a fresh kernel, headless, no Docker) on each
``SUBMISSIONS/<student>/NN_name.ipynb`` and writes ``build/grades/grades.csv``
(``student, notebook, exercise, points, max_points``, one row per exercise) and
``build/grades/feedback/<student>.md`` (points per exercise and the message
of every test that failed). A missing notebook scores 0 with a note; a
notebook that raises still gets the points of the exercises whose tests pass.

The test files are ``notebooks/grading/tests/NN.k.py``, one per exercise
(otter's exception-based format; see docs/teaching.md, *Grading*).
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent
TESTS = NOTEBOOKS / "grading" / "tests"
BUILD = NOTEBOOKS.parent / "build"
ASSIGNMENTS = BUILD / "assignments"
GRADES = BUILD / "grades"
GRADE_TIMEOUT_S = 1800  # one submission, all its cells (FAST mode takes minutes on 2 cores)
CELL_TIMEOUT_S = 600  # one cell of a submission; a student's endless loop ends its notebook's grading

# otter's configuration in the autograder zip: quiet, no PDF, results of every test in results.json.
OTTER_CONFIG = {"lang": "python", "logo": False, "pdf": False, "print_summary": True, "show_hidden": True,
                "show_stdout": False, "zips": False}

INIT_SOURCE = ("import otter\n\n"
               "grader = otter.Notebook(tests_dir=\"tests\")  # grader.check(\"NN.k\"): NN.k's public tests")
EXERCISE_TITLE = re.compile(r"^###\s+(\d+)\.", re.MULTILINE)
EXERCISE_ID = re.compile(r"^(\d\d)\.(\d+)$")


def _course_editions():
    sys.path.insert(0, str(NOTEBOOKS))
    import course_editions

    sys.path.pop(0)
    return course_editions


def test_files(tests: Path = TESTS) -> dict[str, Path]:
    """Exercise id ("NN.k") -> its test file, in exercise order."""
    found = {p.stem: p for p in tests.glob("*.py") if EXERCISE_ID.match(p.stem)}
    return dict(sorted(found.items(), key=lambda kv: tuple(int(x) for x in kv[0].split("."))))


def exercise_cells(nb, number: str) -> list[tuple[str, int]]:
    """``(exercise id, index of its check cell)`` for each exercise after ``## Exercises`` of notebook
    ``number`` (the id is "NN.k" for the question titled ``### k.``)."""
    out, current = [], None
    in_exercises = False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.startswith("## Exercises"):
            in_exercises = True
        elif in_exercises and cell.cell_type == "markdown" and (m := EXERCISE_TITLE.match(cell.source)):
            current = f"{number}.{m.group(1)}"
        elif in_exercises and current and "check" in cell.metadata.get("tags", []):
            out.append((current, i))
    return out


def assignment_edition(nb, number: str, graded: set[str]):
    """The student edition of ``nb`` (notebook ``number``) with otter's ``grader`` set up after
    ``## Exercises`` and ``grader.check("NN.k")`` after each check of an exercise in ``graded``."""
    import nbformat

    ce = _course_editions()
    nb = ce.student_edition(nb)
    checks = exercise_cells(nb, number)
    for exercise, i in checks:
        if exercise in graded:
            nb.cells[i].source = nb.cells[i].source.rstrip() + f'\ngrader.check("{exercise}")'
    start = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                  and c.source.startswith("## Exercises")), None)
    if start is not None and any(e in graded for e, _ in checks):
        nb.cells.insert(start + 1, nbformat.v4.new_code_cell(INIT_SOURCE, metadata={"tags": ["otter-init"]}))
    return nb


def _is_hidden(node: ast.AST) -> bool:
    for deco in getattr(node, "decorator_list", []):
        if isinstance(deco, ast.Call) and getattr(deco.func, "id", "") == "test_case":
            return any(k.arg == "hidden" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in deco.keywords)
    return False


def _points(node: ast.AST) -> float:
    for deco in getattr(node, "decorator_list", []):
        if isinstance(deco, ast.Call) and getattr(deco.func, "id", "") == "test_case":
            for k in deco.keywords:
                if k.arg == "points":
                    return float(ast.literal_eval(k.value))
    return 0.0


def public_test_file(source: str, exercise: str) -> str:
    """A test file without its hidden cases (and without the docstring that describes them);
    ``points`` becomes the public cases' total."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    drop: list[tuple[int, int]] = []
    public_points = 0.0
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            if _is_hidden(node):
                start = min(d.lineno for d in node.decorator_list)
                drop.append((start - 1, node.end_lineno))
            else:
                public_points += _points(node)
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant):
        drop.append((tree.body[0].lineno - 1, tree.body[0].end_lineno))
    keep = [line for i, line in enumerate(lines) if not any(a <= i < b for a, b in drop)]
    text = f'"""{exercise}: the public tests (the grader also runs hidden ones)."""\n' + "".join(keep)
    points = int(public_points) if public_points.is_integer() else public_points
    text = re.sub(r"^points = .*$", f"points = {points}", text, count=1, flags=re.MULTILINE)
    return re.sub(r"\n{3,}(?=\S)", "\n\n\n", text).rstrip() + "\n"


def _notebook_names(only: list[str]) -> list[str]:
    return _course_editions()._names(only)


def build(only: list[str] | None = None, out: Path = ASSIGNMENTS, tests: Path = TESTS) -> dict[str, Path]:
    """Write the student folder and the autograder zip (see the module's docstring); returns their paths."""
    import nbformat

    from patchcore_core.util.atomic import atomic_path, move_into_place, scratch_dir

    files = test_files(tests)
    names = _notebook_names(only or [])
    numbers = {name[:2] for name in names}
    graded = {e for e in files if e[:2] in numbers}
    # Handed out: the public cases of each test file that has any (a quiz's key is hidden only).
    public = {e: public_test_file(files[e].read_text(encoding="utf-8"), e) for e in sorted(graded)}
    public = {e: text for e, text in public.items() if "@test_case(" in text}
    student = out / "student"
    with scratch_dir(student) as tmp:
        (tmp / "tests").mkdir()
        for name in names:
            nb = nbformat.read(NOTEBOOKS / name, as_version=4)
            nbformat.write(assignment_edition(nb, name[:2], set(public)), tmp / name)
        for exercise, text in public.items():
            (tmp / "tests" / f"{exercise}.py").write_text(text, encoding="utf-8")
        (tmp / "README.md").write_text(STUDENT_README, encoding="utf-8")
        move_into_place(tmp, student)
    zip_path = out / "autograder" / "autograder.zip"
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("otter_config.json", json.dumps(OTTER_CONFIG, indent=1))
            z.writestr("requirements.txt", "")  # otter run installs nothing: this environment grades
            for exercise in sorted(graded):
                z.write(files[exercise], f"tests/{exercise}.py")
    return {"student": student, "autograder": zip_path}


STUDENT_README = """\
# Assignments

Open the notebooks in JupyterLab from this folder (`jupyter lab`). Each exercise has a check cell:
run it after your answer. It prints "correct" or a hint, then `grader.check("NN.k")` runs the exercise's
public tests (in `tests/`). Hand in the notebooks, saved, under their own names (`NN_name.ipynb`).
Your teacher's grader reruns each notebook from the top with further tests that are not in `tests/`:
an answer must hold on any input, and a function exercise must be written without calling the
package's own implementation.
"""


# --- grading ---------------------------------------------------------------------------------------------

@dataclass
class ExerciseGrade:
    exercise: str
    points: float
    max_points: float
    failed: list[str] = field(default_factory=list)  # messages of the tests that failed


@dataclass
class NotebookGrade:
    student: str
    notebook: str
    exercises: list[ExerciseGrade]
    note: str = ""


def _autograder_for(zip_path: Path, number: str, dest: Path) -> Path:
    """A copy of the autograder zip with only notebook ``number``'s tests (otter runs every test file
    it holds after the notebook; another notebook's would only fail)."""
    out = dest / f"autograder-{number}.zip"
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for item in src.namelist():
            if not item.startswith("tests/") or Path(item).name.startswith(f"{number}."):
                z.writestr(item, src.read(item))
    return out


def _exercises_in(zip_path: Path, number: str) -> dict[str, tuple[float, list[bool]]]:
    """Exercise id -> (points, whether each test case is hidden), from the test files in the zip."""
    out = {}
    with zipfile.ZipFile(zip_path) as z:
        for item in sorted(z.namelist()):
            stem = Path(item).stem
            if item.startswith("tests/") and stem.startswith(f"{number}.") and EXERCISE_ID.match(stem):
                tree = ast.parse(z.read(item).decode("utf-8"))
                cases = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.decorator_list]
                out[stem] = (sum(_points(n) for n in cases), [_is_hidden(n) for n in cases])
    return dict(sorted(out.items(), key=lambda kv: int(kv[0].split(".")[1])))


CASE = re.compile(r"^\s*\S+ - (\d+) result:\n(.*?)(?=^\s*\S+ - \d+ result:|\Z)", re.MULTILINE | re.DOTALL)
RAISED = re.compile(r"^\s*[\w.]*(Error|Exception|Disabled)\b:", re.MULTILINE)


def _failures(summary: str, hidden: list[bool]) -> list[str]:
    """The message of each failed test case in otter's summary of one test file, marked public or
    hidden (``hidden[i]``: whether case ``i + 1`` of the file is hidden)."""
    failed = []
    for case in CASE.finditer(summary or ""):
        number, text = int(case.group(1)), case.group(2)
        if "❌" not in text:
            continue
        raised = RAISED.search(text)
        message = " ".join(text[raised.start():].split()) if raised else " ".join(text.split()[-30:])
        message = re.sub(r"^AssertionError: ", "", message)
        kind = "hidden" if number <= len(hidden) and hidden[number - 1] else "public"
        failed.append(f"{kind} test {number}: {message}")
    return failed


def _run_notebooks():
    sys.path.insert(0, str(NOTEBOOKS))
    import run_notebooks

    sys.path.pop(0)
    return run_notebooks


def otter_run(autograder: Path, output_dir: Path, submission: Path) -> None:
    """``otter run -a autograder -o output_dir submission``, its kernel client made wake-safe.

    Why: otter executes the notebook with nbconvert's ExecutePreprocessor and no cell timeout; a
    notebook with interactive widgets (01, 02, 03, 07) can lose the wake-up of a cell's reply there
    and then waits forever (``run_notebooks.wake_safe_kernel_manager`` says how). The client gets
    the kernel manager ``run_notebooks.py`` uses, and a cell timeout, before otter runs."""
    import nbconvert.preprocessors
    import otter.run

    manager = _run_notebooks().wake_safe_kernel_manager()
    plain = nbconvert.preprocessors.ExecutePreprocessor

    class WakeSafeExecutePreprocessor(plain):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.kernel_manager_class = manager
            self.timeout = CELL_TIMEOUT_S

    nbconvert.preprocessors.ExecutePreprocessor = WakeSafeExecutePreprocessor  # otter imports it when it runs
    try:
        otter.run.main(str(submission), autograder=str(autograder), output_dir=str(output_dir), no_logo=True)
    finally:
        nbconvert.preprocessors.ExecutePreprocessor = plain


def grade_notebook(submission: Path, zip_path: Path, cache: Path, fast: bool = True,
                   timeout_s: int = GRADE_TIMEOUT_S) -> tuple[dict, str]:
    """Run ``otter run`` (:func:`otter_run`, in a process of its own) on one submitted notebook;
    returns (its results.json, otter's output)."""
    env = _run_notebooks().kernel_env(cache, fast)
    with tempfile.TemporaryDirectory(prefix="grade-") as work:
        work = Path(work)
        ag = _autograder_for(zip_path, submission.name[:2], work)
        out = work / "out"
        out.mkdir()
        command = [sys.executable, __file__, "otter-run", str(ag), str(out), str(submission)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
        results = out / "results.json"
        if not results.exists():
            raise RuntimeError(f"otter run gave no results for {submission}:\n{done.stdout[-2000:]}"
                               f"{done.stderr[-2000:]}")
        return json.loads(results.read_text(encoding="utf-8")), done.stdout


def notebook_grade(student: str, name: str, submission: Path, zip_path: Path, cache: Path,
                   fast: bool = True) -> NotebookGrade:
    exercises = _exercises_in(zip_path, name[:2])
    if not submission.exists():
        missing = [ExerciseGrade(e, 0.0, p, ["not handed in"]) for e, (p, _) in exercises.items()]
        return NotebookGrade(student, name, missing, note=f"{name} not handed in")
    note = ""
    try:
        results, _ = grade_notebook(submission, zip_path, cache, fast)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        results, note = {"tests": []}, f"{name} could not be graded: {str(exc).strip().splitlines()[0][:300]}"
    by_name = {t.get("name"): t for t in results.get("tests", [])}
    grades = []
    for exercise, (max_points, hidden) in exercises.items():
        test = by_name.get(exercise)
        if test is None:
            grades.append(ExerciseGrade(exercise, 0.0, max_points, [note or "not graded"]))
            continue
        grades.append(ExerciseGrade(exercise, float(test.get("score", 0.0)),
                                    float(test.get("max_score", max_points)),
                                    _failures(test.get("output", ""), hidden)))
    return NotebookGrade(student, name, grades, note)


def write_grades(grades: list[NotebookGrade], out: Path = GRADES) -> Path:
    """``out/grades.csv`` and ``out/feedback/<student>.md``, each written to a temp file, then renamed."""
    from patchcore_core.util.atomic import atomic_path

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "notebook", "exercise", "points", "max_points"])
    for g in grades:
        for e in g.exercises:
            writer.writerow([g.student, g.notebook, e.exercise, f"{e.points:g}", f"{e.max_points:g}"])
    with atomic_path(out / "grades.csv") as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    for student in sorted({g.student for g in grades}):
        mine = [g for g in grades if g.student == student]
        got = sum(e.points for g in mine for e in g.exercises)
        total = sum(e.max_points for g in mine for e in g.exercises)
        lines = [f"# Feedback for {student}", "", f"Total: {got:g} / {total:g} points.", ""]
        for g in mine:
            lines += [f"## {g.notebook}", ""] + ([f"*{g.note}*", ""] if g.note else [])
            lines += ["| exercise | points |", "|---|---|"]
            lines += [f"| {e.exercise} | {e.points:g} / {e.max_points:g} |" for e in g.exercises]
            lines.append("")
            failed = [f"- **{e.exercise}**: {message}" for e in g.exercises for message in e.failed]
            lines += failed + ([""] if failed else [])
        with atomic_path(out / "feedback" / f"{student}.md") as tmp:
            tmp.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return out / "grades.csv"


def grade(submissions: Path, only: list[str] | None = None, zip_path: Path = ASSIGNMENTS / "autograder" /
          "autograder.zip", out: Path = GRADES, fast: bool = True, cache: Path | None = None) -> Path:
    """Grade ``submissions/<student>/NN_name.ipynb`` for every student folder and notebook."""
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise SystemExit(f"{submissions}: no such folder; expected SUBMISSIONS/<student>/NN_name.ipynb")
    if not zip_path.exists():
        raise SystemExit(f"{zip_path}: no autograder; run `make assignments` first")
    names = _notebook_names(only or [])
    students = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise SystemExit(f"{submissions}: no student folders (SUBMISSIONS/<student>/NN_name.ipynb)")
    cache = cache or BUILD / "grades-cache"
    grades = []
    for student in students:
        for name in names:
            print(f"{student.name}: {name}", flush=True)
            g = notebook_grade(student.name, name, student / name, zip_path, cache, fast)
            got, total = sum(e.points for e in g.exercises), sum(e.max_points for e in g.exercises)
            print(f"    {got:g} / {total:g}" + (f"  ({g.note})" if g.note else ""), flush=True)
            grades.append(g)
    return write_grades(grades, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build/assignments/: the student folder and the autograder zip")
    b.add_argument("only", nargs="*", metavar="NN")
    b.add_argument("--out", type=Path, default=ASSIGNMENTS)
    g = sub.add_parser("grade", help="grade SUBMISSIONS/<student>/NN_name.ipynb into build/grades/")
    g.add_argument("submissions", type=Path)
    g.add_argument("only", nargs="*", metavar="NN")
    g.add_argument("--autograder", type=Path, default=ASSIGNMENTS / "autograder" / "autograder.zip")
    g.add_argument("--out", type=Path, default=GRADES)
    g.add_argument("--full", action="store_true", help="run the notebooks' full sweeps, not FAST mode")
    r = sub.add_parser("otter-run", help="otter run on one notebook (what grade runs for each)")
    r.add_argument("autograder", type=Path)
    r.add_argument("output_dir", type=Path)
    r.add_argument("submission", type=Path)
    args = parser.parse_args(argv)
    if args.command == "otter-run":
        otter_run(args.autograder, args.output_dir, args.submission)
    elif args.command == "build":
        for what, path in build(args.only, args.out).items():
            print(f"{what}: {path}")
    else:
        print(grade(args.submissions, args.only, args.autograder, args.out, fast=not args.full))
    return 0


if __name__ == "__main__":
    sys.exit(main())
