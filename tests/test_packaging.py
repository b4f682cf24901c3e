import importlib.util
import sys
from pathlib import Path

import pytest

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
    assert project["scripts"]["patchcore"] == "patchcore_core.cli.main:main"
    assert "dev" in project["optional-dependencies"]


def test_code_is_lint_clean():
    import shutil
    import subprocess

    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    result = subprocess.run([ruff, "check", "patchcore_core", "demo", "tests", "benchmarks", "tools",
                             "notebooks"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_version_is_defined_once():
    from importlib.metadata import version

    import tomllib

    import patchcore_core

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert version("patchcore-core") == patchcore_core.__version__


def test_demo_is_not_test_code():
    assert not (ROOT / "demo" / "testing.py").exists()


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_serves_the_demo(tmp_path):
    """`pip install .` (not editable) gives `patchcore demo` and `python -m patchcore_demo`, and
    installs no generic top-level package named `demo`."""
    import shutil
    import site
    import subprocess
    import venv

    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", "notebooks", "docs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("patchcore_core-*.whl"))
    import zipfile

    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    packages = {t for t in tops if not t.endswith((".dist-info", ".data"))}
    assert packages == {"patchcore_core", "patchcore_demo"}
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies come from this environment (a plain path: its editable hooks stay out).
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q",
                    str(wheel)], check=True, capture_output=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    code = "import patchcore_demo, patchcore_core; print(patchcore_demo.__file__, patchcore_core.__file__)"
    where = subprocess.run([py, "-c", code], cwd=outside, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in where and purelib in where
    assert subprocess.run([py, "-c", "import demo"], cwd=outside, capture_output=True).returncode != 0
    for cmd in ([py, "-m", "patchcore_demo", "--help"], [env_dir / "bin" / "patchcore", "demo", "--help"]):
        result = subprocess.run(cmd, cwd=outside, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "--model FILE" in result.stdout
