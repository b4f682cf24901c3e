import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_is_generated_from_pyproject():
    spec = importlib.util.spec_from_file_location("gen_environment", ROOT / "tools" / "gen_environment.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (ROOT / "environment.yml").read_text() == gen.render(), \
        "environment.yml is stale: run `make environment`"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme.split("\n## ")[0]  # among the README's first lines
    assert ci.strip().splitlines()[-1] == "make test"


def test_console_script_is_declared():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["patchcore"] == "patchcore_core.cli:main"
    assert "dev" in project["optional-dependencies"]


def test_code_is_lint_clean():
    import shutil
    import subprocess

    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    result = subprocess.run([ruff, "check", "patchcore_core", "demo", "tests", "benchmarks", "tools",
                             "notebooks"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
