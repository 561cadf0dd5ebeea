"""The weights manifest: profiles, weights entries and their three kinds of source.

The manifest (``manifest.toml`` beside this module, or a file named by ``VOICEBOT_MODEL_MANIFEST``)
says, for each profile, which weights each Triton model uses, and for each weights entry where its
files come from:

- ``package``: an installed Python distribution that carries the files (the local default and CI);
- ``hub``: a Hugging Face repository, downloaded by ``voicebot models fetch`` into a volume;
- ``path``: a folder under ``VOICEBOT_WEIGHTS_DIR`` (a volume filled by ``fetch`` or pre-populated
  for air-gapped clusters).

This module only parses; :mod:`voicebot_models.resolve` turns an entry into files on disk.
It imports nothing heavy, so the Triton ``model.py`` files can use it.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # the Triton 24.x bases run the models with Python 3.10
    import tomli as tomllib

DEFAULT_MANIFEST = Path(__file__).with_name("manifest.toml")
MODEL_NAMES = ("asr", "llm", "tts", "embed")
SourceKind = Literal["package", "hub", "path"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("package", "hub", "path")

PROFILE_ENV = "VOICEBOT_MODEL_PROFILE"
MANIFEST_ENV = "VOICEBOT_MODEL_MANIFEST"
WEIGHTS_DIR_ENV = "VOICEBOT_WEIGHTS_DIR"


class ManifestError(ValueError):
    """The manifest is malformed, or names a profile, model or weights entry that does not exist."""


@dataclass(frozen=True)
class PackageSource:
    """Files inside installed Python distributions.

    ``module``/``dir`` locate the folder that holds ``files``. ``parts`` (``module/relative/path``)
    are concatenated, in order, into the entry's ``file``; ``extra_files`` maps a target name to a
    file of another package (``module/relative/path``).
    """

    distribution: str
    version: str
    module: str
    dir: str = "."
    extra_distributions: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    extra_files: dict[str, str] = field(default_factory=dict)

    @property
    def requirements(self) -> tuple[str, ...]:
        """The pip requirements that install this source (install them with ``--no-deps``)."""
        return (f"{self.distribution}=={self.version}", *self.extra_distributions)


_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face repository: either named ``files`` (stored flat, by base name) or a snapshot
    filtered by ``allow`` patterns.

    A pinned source names the ``revision`` (a commit) and the ``sha256`` of every file it stores,
    keyed by the name it is stored under (the base name of a ``files`` entry; the repository path
    in a snapshot, which then downloads exactly those files). ``fetch`` downloads only pinned
    sources and refuses a file whose digest differs. ``allow`` is what ``voicebot-models pin``
    lists a snapshot's files by.
    """

    repo: str
    revision: str | None = None
    files: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    sha256: dict[str, str] = field(default_factory=dict)
    gated: bool = (
        False  # the hub serves it only with a token (HF_TOKEN) of an account that accepted its licence
    )

    @property
    def pinned(self) -> bool:
        """Whether the manifest names its commit and a digest per file (parse checks the shapes)."""
        return self.revision is not None and bool(self.sha256)

    def stored_name(self, repo_path: str) -> str:
        """Where a repository file lands in the entry's folder."""
        return repo_path.rsplit("/", 1)[-1] if self.files else repo_path


@dataclass(frozen=True)
class WeightsEntry:
    """One set of weights and the places it can come from."""

    id: str
    format: str
    files: tuple[str, ...]
    file: str | None = None
    package: PackageSource | None = None
    hub: HubSource | None = None
    path: str | None = None

    def sources(self) -> tuple[SourceKind, ...]:
        """The kinds of source this entry names, in manifest order."""
        present = {"package": self.package, "hub": self.hub, "path": self.path}
        return tuple(kind for kind in SOURCE_KINDS if present[kind] is not None)

    @property
    def volume_path(self) -> str:
        """Where the entry lives under a weights volume (``path``, or ``<format>/<id>``)."""
        return self.path or f"{self.format}/{self.id}"


@dataclass(frozen=True)
class Profile:
    """Which weights each model uses. ``tts`` lists voices; the first is the default voice."""

    name: str
    description: str
    asr: str
    llm: str
    tts: tuple[str, ...]
    embed: str

    def weights_ids(self, model: str) -> tuple[str, ...]:
        """The weights ids a Triton model of this profile loads."""
        if model == "tts":
            return self.tts
        if model in ("asr", "llm", "embed"):
            return (str(getattr(self, model)),)
        raise ManifestError(f"unknown model {model!r}; expected one of {', '.join(MODEL_NAMES)}")

    def all_weights_ids(self) -> tuple[str, ...]:
        """Every weights id of the profile, without duplicates, in model order."""
        seen: dict[str, None] = {}
        for model in MODEL_NAMES:
            for weights_id in self.weights_ids(model):
                seen.setdefault(weights_id, None)
        return tuple(seen)


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest."""

    default_profile: str
    profiles: dict[str, Profile]
    weights: dict[str, WeightsEntry]
    source: Path | None = None

    def profile(self, name: str | None = None) -> Profile:
        """A profile by name; ``None`` means ``VOICEBOT_MODEL_PROFILE`` or the manifest default."""
        chosen = name or os.environ.get(PROFILE_ENV) or self.default_profile
        try:
            return self.profiles[chosen]
        except KeyError:
            known = ", ".join(sorted(self.profiles))
            raise ManifestError(f"unknown model profile {chosen!r}; known profiles: {known}") from None

    def entry(self, weights_id: str) -> WeightsEntry:
        """A weights entry by id."""
        try:
            return self.weights[weights_id]
        except KeyError:
            raise ManifestError(f"the manifest has no weights entry {weights_id!r}") from None

    def entries_for(self, profile: str | None, model: str) -> tuple[WeightsEntry, ...]:
        """The weights entries a model loads under a profile."""
        return tuple(self.entry(w) for w in self.profile(profile).weights_ids(model))


def _str(table: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: `{key}` must be a non-empty string")
    return value


def _str_tuple(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ManifestError(f"{where}: `{key}` must be a list of strings")
    return tuple(value)


def _package(table: Any, where: str) -> PackageSource | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ManifestError(f"{where}: `package` must be a table")
    extra = table.get("extra_files", {})
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise ManifestError(f"{where}.package: `extra_files` must map names to package files")
    return PackageSource(
        distribution=_str(table, "distribution", f"{where}.package"),
        version=_str(table, "version", f"{where}.package"),
        module=_str(table, "module", f"{where}.package"),
        dir=_str(table, "dir", f"{where}.package", default="."),
        extra_distributions=_str_tuple(table, "extra_distributions", f"{where}.package"),
        parts=_str_tuple(table, "parts", f"{where}.package"),
        extra_files={str(k): str(v) for k, v in extra.items()},
    )


def _hub(table: Any, where: str) -> HubSource | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ManifestError(f"{where}: `hub` must be a table")
    where = f"{where}.hub"
    revision = table.get("revision")
    if revision is not None and not (isinstance(revision, str) and _COMMIT.fullmatch(revision)):
        raise ManifestError(
            f"{where}: `revision` must be a commit: 40 lowercase hex digits, not a branch or tag"
        )
    digests = table.get("sha256", {})
    if not isinstance(digests, dict) or not all(
        isinstance(v, str) and _SHA256.fullmatch(v) for v in digests.values()
    ):
        raise ManifestError(f"{where}: `sha256` must map each stored file to 64 lowercase hex digits")
    if (revision is None) != (not digests):
        raise ManifestError(
            f"{where}: pin both `revision` and `sha256` (docs/models.md, 'Pinning hub weights'), or neither"
        )
    gated = table.get("gated", False)
    if not isinstance(gated, bool):
        raise ManifestError(f"{where}: `gated` must be true or false")
    hub = HubSource(
        repo=_str(table, "repo", where),
        revision=revision,
        gated=gated,
        files=_str_tuple(table, "files", where),
        allow=_str_tuple(table, "allow", where),
        sha256={str(k): str(v) for k, v in digests.items()},
    )
    if hub.files and digests:
        stored = {hub.stored_name(f) for f in hub.files}
        if set(digests) != stored:
            raise ManifestError(f"{where}: `sha256` must name exactly the stored files {sorted(stored)}")
    return hub


def parse_manifest(data: dict[str, Any], source: Path | None = None) -> Manifest:
    """Validate a decoded manifest and build the typed view of it."""
    weights: dict[str, WeightsEntry] = {}
    raw_weights = data.get("weights", {})
    if not isinstance(raw_weights, dict) or not raw_weights:
        raise ManifestError("the manifest needs a non-empty [weights] table")
    for weights_id, table in raw_weights.items():
        where = f"weights.{weights_id}"
        if not isinstance(table, dict):
            raise ManifestError(f"{where} must be a table")
        entry = WeightsEntry(
            id=weights_id,
            format=_str(table, "format", where),
            files=_str_tuple(table, "files", where),
            file=table.get("file"),
            package=_package(table.get("package"), where),
            hub=_hub(table.get("hub"), where),
            path=table.get("path"),
        )
        if not entry.sources():
            raise ManifestError(f"{where}: name at least one source (package, hub or path)")
        if entry.file is not None and entry.file not in entry.files:
            raise ManifestError(f"{where}: `file` {entry.file!r} must be listed in `files`")
        if entry.package and entry.package.parts and entry.file is None:
            raise ManifestError(f"{where}: `parts` are joined into `file`, which is missing")
        if entry.hub and entry.hub.pinned and (unpinned := set(entry.files) - set(entry.hub.sha256)):
            raise ManifestError(f"{where}.hub: `sha256` lacks {sorted(unpinned)} of `files`")
        weights[weights_id] = entry

    profiles: dict[str, Profile] = {}
    raw_profiles = data.get("profiles", {})
    if not isinstance(raw_profiles, dict) or not raw_profiles:
        raise ManifestError("the manifest needs a non-empty [profiles] table")
    for name, table in raw_profiles.items():
        where = f"profiles.{name}"
        if not isinstance(table, dict):
            raise ManifestError(f"{where} must be a table")
        profile = Profile(
            name=name,
            description=str(table.get("description", "")),
            asr=_str(table, "asr", where),
            llm=_str(table, "llm", where),
            tts=_str_tuple(table, "tts", where),
            embed=_str(table, "embed", where),
        )
        if not profile.tts:
            raise ManifestError(f"{where}: `tts` must list at least one voice")
        for weights_id in profile.all_weights_ids():
            if weights_id not in weights:
                raise ManifestError(
                    f"{where} uses weights {weights_id!r}, which the manifest does not define"
                )
        profiles[name] = profile

    default = _str(data, "default_profile", "manifest")
    if default not in profiles:
        raise ManifestError(f"default_profile {default!r} is not a profile of the manifest")
    return Manifest(default_profile=default, profiles=profiles, weights=weights, source=source)


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Read a manifest: ``path``, else ``VOICEBOT_MODEL_MANIFEST``, else the built-in one."""
    chosen = Path(path or os.environ.get(MANIFEST_ENV) or DEFAULT_MANIFEST)
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"weights manifest not found: {chosen}") from None
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"weights manifest {chosen} is not valid TOML: {e}") from e
    return parse_manifest(data, source=chosen)
