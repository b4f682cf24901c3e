import importlib.util
import os
import sys
from pathlib import Path

import pytest
from paths import ROOT


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


def test_every_package_folder_is_in_the_wheel():
    """pyproject.toml lists packages by name: a new folder left out would be missing from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    inits = (ROOT / "patchcore_core").rglob("__init__.py")
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in inits}
    assert folders <= listed, f"not in [tool.setuptools] packages: {sorted(folders - listed)}"
    assert "patchcore_demo" in listed and "demo" not in listed


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


def test_imports_point_one_way():
    """The import-linter contracts in pyproject.toml: the layers, and a pipeline that imports only
    numerical libraries."""
    import shutil
    import subprocess

    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_cycle_anywhere():
    """No module of the package reaches itself through its imports (function-level ones included),
    inside a layer as much as across layers."""
    import grimp

    graph = grimp.build_graph("patchcore_core")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported != module and graph.chain_exists(importer=imported, imported=module):
                cycles.append(f"{module} -> {imported}")
    # a package's __init__ that re-exports its own modules is not a cycle of code
    cycles = [c for c in cycles if not any(c.startswith(f"{p} -> {p}.") or c.endswith(f"-> {p}")
                                           for p in _packages(graph))]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _packages(graph) -> set[str]:
    return {m for m in graph.modules if any(o.startswith(m + ".") for o in graph.modules)}


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
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the checkout
    where = subprocess.run([py, "-c", code], cwd=outside, env=clean, capture_output=True, text=True,
                           check=True).stdout
    assert str(ROOT) not in where and purelib in where
    refused = subprocess.run([py, "-c", "import demo"], cwd=outside, env=clean, capture_output=True)
    assert refused.returncode != 0  # no top-level "demo" installed
    for cmd in ([py, "-m", "patchcore_demo", "--help"], [env_dir / "bin" / "patchcore", "demo", "--help"]):
        result = subprocess.run(cmd, cwd=outside, env=clean, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "--model FILE" in result.stdout
