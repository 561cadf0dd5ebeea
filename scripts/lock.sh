#!/usr/bin/env bash
# Regenerate the Python lock files requirements/*.lock (`make lock`): every package pinned with
# the sha256 of each of its files on the index, so `pip install --require-hashes` installs exactly
# what was locked. The inputs keep the ranges (pyproject.toml, images/triton/pyproject.toml,
# requirements/*.txt); tests/unit/test_supply_chain.py fails when a lock no longer satisfies them.
# Run it after changing an input; commit the inputs and the locks together.
#
# The gateway, `make up` and `make test` run CPython 3.11 on Linux x86_64 (glibc 2.35 or later:
# nvidia-pytriton's wheels); the Triton images run the base's Python (3.10 on the NGC 24.x bases,
# 3.11 on the local stand-in), so their locks are universal from 3.10 up.
# test.lock is resolved first; every other lock of the same Python stack takes its versions from
# it (-c), so a package has one version in the venv and in the images.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
req=requirements
linux=(--python-version 3.11 --python-platform x86_64-manylinux_2_35)
universal=(--python-version 3.10 --universal)

compile() {  # compile OUTPUT uv-pip-compile-args...
  local out=$1; shift
  echo "==> $out"
  UV_CUSTOM_COMPILE_COMMAND="make lock" "$uv" pip compile --quiet --generate-hashes --no-strip-markers \
    --index-url https://pypi.org/simple --no-emit-index-url "$@" -o "$out"
}

# llama-cpp-python is an sdist compiled once into the wheel cache (scripts/install-python.sh), whose
# wheel no index hash can match: it is locked on its own (llama-cpp.lock, the sdist's hash) and left
# out of the other locks; its dependencies stay in them.
no_llama=(--no-emit-package llama-cpp-python)
projects=(pyproject.toml images/triton/pyproject.toml)

compile "$req/test.lock" "${linux[@]}" "${no_llama[@]}" "${projects[@]}" \
  --extra local --extra test --extra fetch "$req/models.txt"
compile "$req/local.lock" "${linux[@]}" "${no_llama[@]}" -c "$req/test.lock" "${projects[@]}" \
  --extra local --extra fetch "$req/models.txt"
compile "$req/gateway.lock" "${linux[@]}" -c "$req/test.lock" pyproject.toml
# The universal locks take test.lock's versions on 3.11 and up only: some (onnxruntime) need 3.11.
on311=$(mktemp)
trap 'rm -f "$on311"' EXIT
grep -E '^[A-Za-z0-9]' "$req/test.lock" | sed -E "s/ *\\\\$//; s/ ;.*$//; s/$/ ; python_full_version >= '3.11'/" >"$on311"
compile "$req/build.lock" "${universal[@]}" -c "$on311" "$req/build.txt"
compile "$req/triton.lock" "${universal[@]}" "${no_llama[@]}" -c "$on311" \
  images/triton/pyproject.toml --extra fetch "$req/models.txt"
compile "$req/models-vllm.lock" "${universal[@]}" -c "$on311" \
  images/triton/pyproject.toml --extra fetch "$req/models-vllm.txt"
# --no-deps: packages whose declared dependencies are not installed (docs in each input file).
compile "$req/models-nodeps.lock" "${universal[@]}" --no-deps "$req/models-nodeps.txt"
compile "$req/models-quality.lock" "${universal[@]}" --no-deps "$req/models-quality.txt"
grep -E '^llama-cpp-python[=<>]' "$req/models.txt" \
  | compile "$req/llama-cpp.lock" "${universal[@]}" --no-deps -
# The gateway image takes only faster-whisper's files (the Silero VAD model), not its runtimes.
grep -E '^faster-whisper[=<>]' "$req/models.txt" \
  | compile "$req/gateway-nodeps.lock" "${linux[@]}" --no-deps -c "$req/test.lock" -
compile "$req/tools.lock" "${linux[@]}" "$req/tools.txt"
