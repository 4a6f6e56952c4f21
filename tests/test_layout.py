"""The layers import downwards only: remote code <- causal2vec <- train, evaluation (never each other)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from causal2vec import REPO_ROOT

# package -> top-level project modules it must not import
FORBIDDEN = {
    "train": {"evaluation", "serve", "benchmarks"},
    "evaluation": {"train", "serve", "benchmarks"},
    "causal2vec": {"train", "evaluation", "serve", "benchmarks"},
}


def _imported(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_the_layers_above(package):
    bad = {
        str(path.relative_to(REPO_ROOT)): sorted(_imported(path) & FORBIDDEN[package])
        for path in (REPO_ROOT / package).rglob("*.py")
    }
    assert not {k: v for k, v in bad.items() if v}


def project_files(pattern: str) -> list[Path]:
    """The project's files matching `pattern`: git's tracked and untracked-but-not-ignored ones (no virtual
    environment, build folder or tool cache, whatever its name), or every file in a copy without git."""
    git = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", pattern],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if git.returncode == 0:
        return sorted(REPO_ROOT / name for name in git.stdout.split("\0") if name and (REPO_ROOT / name).is_file())
    return sorted(p for p in REPO_ROOT.rglob(pattern) if ".venv" not in p.parts)


def test_no_sys_path_edits():
    """The project is installed (`pip install -e .`): nothing puts folders on sys.path."""
    files = [p for p in project_files("*.py") if p.name != "test_layout.py"]
    assert not [str(p.relative_to(REPO_ROOT)) for p in files if "sys.path.insert" in p.read_text(errors="replace")]


def test_paths_and_data_readers_import_without_torch():
    """`causal2vec`'s paths and the evaluation data and cache readers load without torch (`DTYPES` lives in
    `causal2vec.dtypes`), so a table or a data check does not pay torch's import."""
    code = "import sys, causal2vec, evaluation.data, evaluation.cache; print(sorted({'torch'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_wheel_holds_the_remote_code_the_packages_and_their_data(tmp_path):
    """`pip wheel .` (what a non-editable install builds) ships the remote code at the top level, every package,
    the YAML train configs and the instruction table, and setuptools does not warn that it left any of them out."""
    import shutil
    import zipfile

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    # built from a copy: setuptools writes build/ and *.egg-info into the tree it builds
    source = tmp_path / "src"
    options = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in {name.split(".")[0] for name in options["packages"]}:
        shutil.copytree(REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in [f"{module}.py" for module in options["py-modules"]] + ["pyproject.toml"]:
        shutil.copy(REPO_ROOT / name, source / name)
    # no build isolation: the venv's setuptools (torch requires it) builds offline, no download of a build env
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    cmd.append(str(source))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # setuptools' warnings about what it ships (a package or data left out); not its unrelated deprecations
    assert "absent from the `packages`" not in proc.stderr and "package_data" not in proc.stderr, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("causal2vec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"{module}.py" for module in options["py-modules"]}
    expected |= {f"{package}/__init__.py" for package in options["packages"] if package != "train.configs"}
    expected |= {"train/configs/default.yaml", "causal2vec/instructions.json", "benchmarks/seeds.py"}
    assert expected <= names, sorted(expected - names)
