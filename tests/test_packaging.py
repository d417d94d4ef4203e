"""One namespace: the installed project is ``arcsearch.*`` only, while the repository keeps training/, index/
and service/ at its top level (pyproject.toml maps them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.bundles import REPO

SOURCE_ROOTS = {"arcsearch": "arcsearch", "arcsearch.training": "training", "arcsearch.index": "index",
                "arcsearch.service": "service"}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def packages_on_disk() -> set[str]:
    """Every folder with an ``__init__.py`` below the mapped roots, by the name it installs under."""
    names = set()
    for package, folder in SOURCE_ROOTS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            names.add(".".join([package, *init.parent.relative_to(REPO / folder).parts]))
    return names


def test_every_package_of_the_tree_is_listed_and_mapped() -> None:
    setuptools = pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"] == SOURCE_ROOTS
    assert set(setuptools["packages"]) == packages_on_disk()


def test_only_the_namespace_imports_from_outside_the_repository(tmp_path: Path) -> None:
    """From another folder (no repository on sys.path) ``arcsearch.index`` imports and ``index`` does not."""
    code = ("import importlib.util as u, arcsearch.index.store, arcsearch.service.app, arcsearch.training.run; "
            "print([u.find_spec(n) is None for n in ('index', 'service', 'training')])")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[True, True, True]"


def test_the_wheel_holds_arcsearch_alone_with_the_page(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: setuptools writes build/ beside the sources it builds
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in SOURCE_ROOTS.values():
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("arcsearch-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"arcsearch"}
    assert "arcsearch/service/static/index.html" in names and "arcsearch/training/engine/loop.py" in names
