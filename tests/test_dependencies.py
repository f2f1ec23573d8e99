"""The dependency pins and the tested lock agree, and this environment is the lock.

A new upstream release must not turn a fresh install red: every dependency has an upper bound
(the version the suite passed with), ``constraints.txt`` pins each one inside its range, and the
README's commands and ``.ci/run`` install with that lock.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, ver = line.partition("==")
        assert sep, f"constraints.txt: '{line}' is not an exact pin (name==version)"
        pins[canonicalize_name(name)] = ver.strip()
    return pins


def test_every_dependency_has_an_upper_bound() -> None:
    unbounded = [
        str(r) for r in _requirements()
        if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)
    ]
    assert not unbounded, f"dependencies without an upper bound: {unbounded}"


def test_lock_pins_every_dependency_inside_its_range() -> None:
    lock = _lock()
    problems = []
    for req in _requirements():
        pinned = lock.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name}: not in constraints.txt")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}=={pinned} is outside pyproject's {req.specifier}")
    assert not problems, "; ".join(problems)


def test_readme_and_ci_install_with_the_lock() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    installs = [line for line in readme.splitlines() if "python3 -m venv" in line and "pip install -e" in line]
    assert len(installs) == 2, installs  # the two fresh-machine commands
    for line in installs + [line for line in ci.splitlines() if "pip install" in line]:
        assert "-c constraints.txt" in line, line


def test_installed_direct_dependencies_are_the_locked_versions() -> None:
    """The suite certifies the lock: it must run on exactly the locked versions."""
    lock = _lock()
    drift = []
    for req in _requirements():
        try:
            have = version(req.name)
        except PackageNotFoundError:
            continue  # an optional extra not installed here
        want = lock[canonicalize_name(req.name)]
        if have.split("+")[0] != want.split("+")[0]:
            drift.append(f"{req.name} {have} (lock: {want})")
    assert not drift, (
        "this environment is not the tested lock; reinstall with "
        f"`pip install -e '.[dev,docs]' -c constraints.txt`: {drift}"
    )
