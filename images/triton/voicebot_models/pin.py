"""``voicebot-models pin``: the commit and per-file sha256 that pin a hub source in the manifest.

Run on a machine that reaches the hub (``make pin-weights``); it prints a ``[weights.<id>.hub]``
table for each entry to paste into ``manifest.toml`` in place of the entry's ``hub = {...}``. The
commit is the one the repository's ``--revision`` (default ``main``) points at now; each file's
digest is the hub's LFS sha256 where it has one, else the sha256 of the file downloaded at that
commit (small JSON files are plain git blobs). Review the diff like any dependency bump.
"""

from __future__ import annotations

import fnmatch
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from voicebot_models.fetch import file_sha256
from voicebot_models.manifest import HubSource, Manifest, ManifestError


class HubApi(Protocol):
    """What pinning asks of the hub (``huggingface_hub.HfApi``; tests pass a fake)."""

    def model_info(
        self, repo_id: str, *, revision: str | None = None, files_metadata: bool = False
    ) -> Any: ...

    def hf_hub_download(
        self, repo_id: str, filename: str, *, revision: str | None = None, local_dir: str
    ) -> str: ...


@dataclass(frozen=True)
class Pin:
    weights_id: str
    hub: HubSource
    revision: str
    sha256: dict[str, str]

    def toml(self) -> str:
        """The ``[weights.<id>.hub]`` table, with its ``sha256`` sub-table."""
        key = (
            json.dumps(self.weights_id) if not self.weights_id.replace("-", "").isalnum() else self.weights_id
        )
        lines = [
            f"[weights.{key}.hub]",
            f"repo = {json.dumps(self.hub.repo)}",
            f'revision = "{self.revision}"',
        ]
        if self.hub.files:
            lines.append(f"files = {json.dumps(list(self.hub.files))}")
        if self.hub.allow:
            lines.append(f"allow = {json.dumps(list(self.hub.allow))}")
        if self.hub.gated:
            lines.append("gated = true")
        lines.append(f"[weights.{key}.hub.sha256]")
        lines += [f'{json.dumps(name)} = "{digest}"' for name, digest in sorted(self.sha256.items())]
        return "\n".join(lines)


def _repo_files(hub: HubSource, siblings: Sequence[Any]) -> list[str]:
    if hub.files:
        return list(hub.files)
    names = [s.rfilename for s in siblings if not s.rfilename.startswith(".")]
    if hub.allow:
        names = [n for n in names if any(fnmatch.fnmatch(n, pattern) for pattern in hub.allow)]
    return sorted(names)


def pin_entry(weights_id: str, hub: HubSource, api: HubApi, revision: str | None = None) -> Pin:
    """Resolve ``revision`` (default ``main``) to a commit and digest every file the source stores."""
    info = api.model_info(hub.repo, revision=revision or "main", files_metadata=True)
    commit = str(info.sha)
    siblings = {s.rfilename: s for s in info.siblings or ()}
    digests: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in _repo_files(hub, list(siblings.values())):
            sibling = siblings.get(name)
            if sibling is None:
                raise ManifestError(f"weights {weights_id!r}: {hub.repo}@{commit} has no file {name}")
            lfs = getattr(sibling, "lfs", None)
            if lfs is not None and getattr(lfs, "sha256", None):
                digest = str(lfs.sha256)
            else:
                digest = file_sha256(
                    Path(api.hf_hub_download(hub.repo, name, revision=commit, local_dir=tmp))
                )
            digests[hub.stored_name(name)] = digest
    if not digests:
        raise ManifestError(f"weights {weights_id!r}: {hub.repo}@{commit} has no file the source stores")
    return Pin(weights_id, hub, commit, digests)


def pin(manifest: Manifest, ids: Sequence[str], api: HubApi, revision: str | None = None) -> list[Pin]:
    """Pins for the named entries, or for every hub source not pinned yet."""
    chosen = list(ids) or [w for w, e in manifest.weights.items() if e.hub is not None and not e.hub.pinned]
    pins = []
    for weights_id in chosen:
        hub = manifest.entry(weights_id).hub
        if hub is None:
            raise ManifestError(f"weights {weights_id!r} has no hub source")
        pins.append(pin_entry(weights_id, hub, api, revision))
    return pins
