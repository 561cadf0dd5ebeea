"""What the builds install is what the repository pins (issue 16, supply chain).

The UI's packages come from the committed ui/package-lock.json through `npm ci`, which installs
exactly that and never rewrites it, in `make up`/`make test` (scripts/build-ui.sh) and in the
gateway image alike; `npm install` would resolve again and rewrite the lock.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.contracts import REPO

NPM_INSTALLERS = [REPO / "scripts" / "build-ui.sh", REPO / "images" / "gateway" / "Dockerfile"]
# A command line (not a comment) that runs npm install / npm i, with or without --prefix.
_NPM_INSTALL = re.compile(r"\bnpm\b(?:\s+--prefix\s+\S+)?\s+(?:install|i|add)\b")
_NPM_CI = re.compile(r"\bnpm\b(?:\s+--prefix\s+\S+)?\s+ci\b")


def _code_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]


@pytest.mark.parametrize("path", NPM_INSTALLERS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_ui_packages_are_installed_with_npm_ci(path: Path) -> None:
    lines = _code_lines(path)
    assert any(_NPM_CI.search(line) for line in lines), f"{path}: no `npm ci`"
    assert not [line for line in lines if _NPM_INSTALL.search(line)], (
        f"{path}: `npm install` rewrites the lock"
    )


def test_the_lock_is_committed_beside_package_json() -> None:
    assert (REPO / "ui" / "package-lock.json").is_file()
    assert '"lockfileVersion": 3' in (REPO / "ui" / "package-lock.json").read_text()


def test_the_patterns_tell_install_from_ci() -> None:
    assert _NPM_INSTALL.search("npm install --no-audit")
    assert _NPM_INSTALL.search("RUN npm --prefix ui install --no-audit")
    assert not _NPM_INSTALL.search("npm ci --no-audit")
    assert _NPM_CI.search("RUN npm --prefix ui ci --no-audit")
