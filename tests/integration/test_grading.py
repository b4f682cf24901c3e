"""Graded assignments (`make assignments`, `make grade`): what students get holds no solution and no
expected value, the grader's hidden tests stay with the grader, and otter-grader scores submissions.

    pytest tests/integration/test_grading.py -m "not slow"   # the builder (seconds)
    pytest tests/integration/test_grading.py                 # + grading 4 submitted notebooks (minutes)
"""

from __future__ import annotations

import ast
import csv
import re
import sys
import zipfile

import nbformat
import pytest
from paths import NOTEBOOKS

sys.path.insert(0, str(NOTEBOOKS))
import assignments  # noqa: E402
import run_notebooks  # noqa: E402

sys.path.pop(0)
NAMES = run_notebooks.notebook_names()
GRADE_GUARD_S = 3600  # four notebooks run by otter on a loaded 2-core machine; a hang guard, not a goal


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return assignments.build([], tmp_path_factory.mktemp("assignments"))


def exercises_of(name: str, checked_by: str = "") -> list[str]:
    """The notebook's exercise ids; ``checked_by``: only those whose check cell calls it
    ("exercises.check_exercise(": their public test runs the same check; "quiz.check(": the quizzes)."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    return [e for e, i in assignments.exercise_cells(nb, name[:2]) if checked_by in nb.cells[i].source]


def test_every_exercise_has_a_test_file_with_hidden_cases():
    files = assignments.test_files()
    every = [e for name in NAMES for e in exercises_of(name)]
    checked = {e for name in NAMES for e in exercises_of(name, "exercises.check_exercise(")}
    quizzes = {e for name in NAMES for e in exercises_of(name, "quiz.check(")}
    assert set(every) - quizzes == checked, \
        f"checked otherwise than by check_exercise: {sorted(set(every) - quizzes - checked)}"
    assert {e[:2] for e in checked} >= {"11", "12"} and len(checked) >= 33
    assert set(every) <= set(files), sorted(set(every) - set(files))
    for exercise in every:
        tree = ast.parse(files[exercise].read_text())
        cases = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.decorator_list]
        hidden = [assignments._is_hidden(n) for n in cases]
        assert any(hidden), f"{exercise}: hidden cases"
        if exercise in checked:
            assert not all(hidden), f"{exercise}: public cases that say what is off"
        assert f'name = "{exercise}"' in files[exercise].read_text()


def test_the_student_folder_has_no_solution_no_expected_value_and_only_public_tests(built):
    student = built["student"]
    assert sorted(p.name for p in student.glob("*.ipynb")) == NAMES
    for name in NAMES:
        nb = nbformat.read(student / name, as_version=4)
        assert not [c for c in nb.cells if "solution" in tags(c)]
        assert "*Answer.*" not in "\n".join(c.source for c in nb.cells)
        graded = [c for c in nb.cells if "check" in tags(c) and "grader.check(" in c.source]
        assert [re.search(r'grader\.check\("([\d.]+)"\)', c.source)[1] for c in graded] == \
            [e for e in exercises_of(name) if (student / "tests" / f"{e}.py").exists()]
        assert any("otter-init" in tags(c) for c in nb.cells)
        for cell in (c for c in nb.cells if "check" in tags(c)):  # every check but a quiz's: one call
            if "quiz.check(" not in cell.source:
                assert_no_expected_value(cell.source, name)
    for test in (student / "tests").glob("*.py"):
        text = test.read_text()
        assert "hidden=True" not in text and "Hidden" not in text, test.name
        assert "hidden=False" in text
        public = sum(float(p) for p in re.findall(r"@test_case\(points=([\d.]+), hidden=False", text))
        assert re.search(rf"^points = {public:g}$", text, re.MULTILINE), \
            f"{test.name}: points are the public cases'"


def assert_no_expected_value(source: str, name: str):
    """A check cell is one call of exercises.check_exercise on the answer and the notebook's data (then
    otter's grader.check): nothing computed before it, no numbers (other than indices), no arithmetic, no
    comparisons."""
    tree = ast.parse(source)
    statements = [s for s in tree.body if not ast.unparse(s).startswith("grader.check(")]
    assert len(statements) == 1 and isinstance(statements[0], ast.Expr), source
    call = statements[0].value
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "exercises.check_exercise", source
    assert call.args[0].value.startswith(name[:2] + "."), source
    for node in ast.walk(ast.Module(body=[ast.Expr(a) for a in call.args[1:]], type_ignores=[])):
        assert not isinstance(node, (ast.BinOp, ast.Compare, ast.BoolOp, ast.Lambda)), source
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            pytest.fail(f"a number in a check cell: {source}")


def test_the_autograder_holds_every_test_with_its_hidden_cases(built):
    with zipfile.ZipFile(built["autograder"]) as z:
        names = z.namelist()
        assert "otter_config.json" in names
        tests = {n: z.read(n).decode() for n in names if n.startswith("tests/")}
    assert {f"tests/{p.name}" for p in assignments.TESTS.glob("*.py")} == set(tests)
    assert all("hidden=True" in t for t in tests.values())


def test_a_public_test_file_keeps_its_public_cases_and_their_points():
    source = (assignments.TESTS / "02.1.py").read_text()
    public = assignments.public_test_file(source, "02.1")
    assert "def test_check(" in public and "def test_other_point_sets(" not in public
    assert "points = 1\n" in public and "points = 3" not in public
    compile(public, "02.1.py", "exec")


def test_failures_are_read_from_otters_summary_and_marked_public_or_hidden():
    summary = ("02.1 results:\n    02.1 - 1 result:\n        ✅ Test case passed\n\n"
               "    02.1 - 2 result:\n        ❌ Test case failed\n        Error at line 30 in test 02.1:\n"
               "              grading.matches(my_greedy_kcenter, ...)\n"
               "        AssertionError: not quite: my_greedy_kcenter raised ReferenceDisabled on hidden "
               "case 1")
    assert assignments._failures(summary, [False, True]) == [
        "hidden test 2: not quite: my_greedy_kcenter raised ReferenceDisabled on hidden case 1"]


WRAPPED = '''def my_greedy_kcenter(points, k, first):  # the package's answer, wrapped
    from patchcore_core.pipeline.coreset import reference_greedy_coreset

    x = torch.from_numpy(points)
    return reference_greedy_coreset(x, k, projection_dim=points.shape[1], first=first).indices.numpy()
'''


@pytest.fixture(scope="module")
def graded(built, tmp_path_factory):
    """Three students: one hands in the solution editions of 00 and 02, one the blank student edition of
    02 (00 missing), one 02's solutions with greedy k-center answered by wrapping the package's and a cell
    that raises before the exercises."""
    subs = tmp_path_factory.mktemp("submissions")
    for student in ("solution", "blank", "wrapper"):
        (subs / student).mkdir()
    for name in ("00_quickstart.ipynb", "02_memory_bank_and_coreset.ipynb"):
        (subs / "solution" / name).write_bytes((NOTEBOOKS / name).read_bytes())
    name02 = "02_memory_bank_and_coreset.ipynb"
    (subs / "blank" / name02).write_bytes((built["student"] / name02).read_bytes())
    nb = nbformat.read(NOTEBOOKS / name02, as_version=4)
    [cell] = [c for c in nb.cells if "solution" in tags(c) and c.source.startswith("def my_greedy_kcenter")]
    cell.source = WRAPPED
    start = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Exercises"))
    nb.cells.insert(start + 1, nbformat.v4.new_code_cell('raise RuntimeError("a cell that crashes")'))
    nbformat.write(nb, subs / "wrapper" / name02)
    out = tmp_path_factory.mktemp("grades")
    path = assignments.grade(subs, ["00", "02"], built["autograder"], out,
                             cache=tmp_path_factory.mktemp("cache"))
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return out, rows


def points(rows, student, exercise) -> tuple[float, float]:
    [row] = [r for r in rows if r["student"] == student and r["exercise"] == exercise]
    return float(row["points"]), float(row["max_points"])


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(GRADE_GUARD_S)
def test_grades_csv_has_a_row_per_student_notebook_and_exercise(graded):
    out, rows = graded
    with (out / "grades.csv").open() as f:
        assert f.readline().strip() == "student,notebook,exercise,points,max_points"
    expected = {(s, n, e) for s in ("solution", "blank", "wrapper")
                for n in ("00_quickstart.ipynb", "02_memory_bank_and_coreset.ipynb") for e in exercises_of(n)}
    assert {(r["student"], r["notebook"], r["exercise"]) for r in rows} == expected
    assert len(rows) == len(expected)
    feedback = sorted(p.name for p in (out / "feedback").glob("*.md"))
    assert feedback == ["blank.md", "solution.md", "wrapper.md"]


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(GRADE_GUARD_S)
def test_the_solution_edition_scores_full_marks_and_the_blank_student_edition_zero(graded):
    out, rows = graded
    for r in rows:
        got, most = float(r["points"]), float(r["max_points"])
        assert most > 0
        if r["student"] == "solution":
            assert got == most, r
        if r["student"] == "blank":
            assert got == 0, r
    blank = (out / "feedback" / "blank.md").read_text()
    assert "00_quickstart.ipynb not handed in" in blank and "not answered yet" in blank


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.timeout(GRADE_GUARD_S)
def test_a_wrapped_reference_scores_zero_on_its_exercise_and_the_others_keep_theirs_after_a_crash(graded):
    out, rows = graded
    assert points(rows, "wrapper", "02.1")[0] == 0
    got, most = points(rows, "wrapper", "02.2")
    assert got == most > 0
    feedback = (out / "feedback" / "wrapper.md").read_text()
    assert "the grader disabled patchcore_core.pipeline.coreset.reference_greedy_coreset" in feedback
