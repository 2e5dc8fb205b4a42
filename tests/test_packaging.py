"""The package as users install it: every data file under prefkit/ ships (matches a package-data pattern of
pyproject.toml), the version has one owner, and package data is read through importlib.resources only.

CI also builds the sdist, the wheel from the sdist, installs it outside the checkout and runs every command
(.ci/smoke.py); these tests catch the same drift in seconds."""

from __future__ import annotations

import fnmatch
import re
import sys
from pathlib import Path

import prefkit

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_data_file_under_the_package_ships():
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["*"]
    data = [
        p
        for p in (ROOT / "prefkit").rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]
    assert data, "no package data found"
    missing = [str(p.relative_to(ROOT)) for p in data if not any(fnmatch.fnmatch(p.name, pat) for pat in patterns)]
    assert missing == [], f"data files no package-data pattern of pyproject.toml ships: {missing}"


def test_packages_are_found_and_every_package_folder_has_an_init():
    find = _pyproject()["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["prefkit", "prefkit.*"]
    for folder in (ROOT / "prefkit").rglob("*"):
        has_code = folder.is_dir() and any(folder.glob("*.py"))
        if has_code and "__pycache__" not in folder.parts:
            assert (folder / "__init__.py").is_file(), f"{folder} holds code but is no package: it would not ship"


def test_version_has_one_owner():
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "prefkit.version.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", prefkit.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{prefkit.__version__}]" in changelog, "CHANGELOG.md has no entry for this version"


#: modules that may use paths from ``__file__``, and why
EXEMPT = {
    "prefkit/resources.py": "the one reader of package data",
    "prefkit/commands/flags.py": "hashes the package's own .py sources beside it (flags.json is used only while "
    "they match); a missing file only means the slower live flags",
}


def test_package_data_is_read_through_importlib_resources_only():
    """A path computed from ``__file__`` to a data file works in a checkout and breaks in a wheel (the bug of
    0.2.0: ``schemas/`` beside the package); ``prefkit.resources`` is the one reader."""
    offenders = []
    for path in (ROOT / "prefkit").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        by_path = re.search(r"__file__\)?\.(resolve\(\)\.)?parents?\b", text) or "resources.files(" in text
        if by_path and path.relative_to(ROOT).as_posix() not in EXEMPT:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"read package data with prefkit.resources instead: {offenders}"
