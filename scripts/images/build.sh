#!/usr/bin/env bash
# Build the gateway image and a CPU Triton image with the repository's Dockerfiles, using podman,
# on local stand-ins for the registry bases (images/local/bases.Dockerfile). Every step of the
# product Dockerfiles is the one the hosted workflow runs; only the bases differ (build ARGs).
# Layers are cached by podman, so a second run with no change takes seconds.
# Writes build/images/build.json: each image's build seconds and size.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/images/podman-setup.sh

out=build/images
mkdir -p "$out"
tag=${VOICEBOT_IMAGES_TAG:-test}
ca=/etc/ssl/certs/ca-certificates.crt
# The host's CA bundle inside each build (pip and npm reach their index through it); the wheel
# cache (llama-cpp-python, compiled once by scripts/install-python.sh) so nothing compiles twice.
wheel_cache=${VOICEBOT_WHEEL_CACHE:-$HOME/.cache/voicebot/wheels}
mkdir -p "$wheel_cache"
common=(--network=host --layers -v "$ca:/run/voicebot/ca.crt:ro" --build-arg PIP_CERT=/run/voicebot/ca.crt)

timings=()
build() {  # build NAME podman-build-args...
  local name=$1; shift
  local start=$SECONDS
  echo "==> podman build $name"
  podman build "${common[@]}" "$@" >"$out/build-$name.log" 2>&1 || {
    tail -40 "$out/build-$name.log" >&2
    echo "error: building $name failed (log: $out/build-$name.log)" >&2
    exit 1
  }
  timings+=("\"$name\": $((SECONDS - start))")
}

build base-python -f images/local/bases.Dockerfile --target python -t localhost/voicebot/base-python .
# The host's Node 20 (Debian's is 18, too old for Next.js), as a build context for the node base.
hostnode=$out/host-node
rm -rf "$hostnode" && mkdir -p "$hostnode/usr/bin" "$hostnode/usr/lib/node_modules"
cp -a "$(readlink -f "$(command -v node)")" "$hostnode/usr/bin/node"
cp -a "$(dirname "$(readlink -f "$(command -v npm)")")/../../npm" "$hostnode/usr/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$hostnode/usr/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$hostnode/usr/bin/npx"
build base-node -f images/local/bases.Dockerfile --target node --build-context "hostnode=$hostnode" \
  -t localhost/voicebot/base-node .
build base-triton-cpu -f images/local/bases.Dockerfile --target triton-cpu -t localhost/voicebot/base-triton-cpu .
build base-postgres -f images/local/bases.Dockerfile --target postgres -t localhost/voicebot/base-postgres .
build gateway -f images/gateway/Dockerfile --ignorefile images/gateway/Dockerfile.dockerignore \
  --build-arg PYTHON_BASE=localhost/voicebot/base-python --build-arg NODE_BASE=localhost/voicebot/base-node \
  --build-arg NODE_EXTRA_CA_CERTS=/run/voicebot/ca.crt -t "localhost/voicebot/gateway:$tag" .
triton_args=(-f images/triton/Dockerfile --ignorefile images/triton/Dockerfile.dockerignore
  --build-arg TRITON_BASE=localhost/voicebot/base-triton-cpu
  -v "$wheel_cache:/run/voicebot/wheels:ro" --build-arg PIP_FIND_LINKS=/run/voicebot/wheels)
# The wheels stage as an image of its own, handed back as the build context `wheels`: buildah 1.28
# bind-mounts an empty folder for `RUN --mount=from=<stage>` when that stage came from the layer
# cache ("couldn't find .../merged/wheels on host"), so a cached rebuild would install nothing.
build triton-wheels "${triton_args[@]}" --target wheels -t "localhost/voicebot/triton-wheels:$tag" .
build triton "${triton_args[@]}" --build-context "wheels=container-image://localhost/voicebot/triton-wheels:$tag" \
  -t "localhost/voicebot/triton:$tag" .

sizes=()
for image in gateway triton; do  # the product images (the bases are stand-ins)
  sizes+=("\"$image\": $(podman image inspect --format '{{.Size}}' "localhost/voicebot/$image:$tag")")
done
printf '{"build_seconds": {%s}, "size_bytes": {%s}}\n' "$(IFS=,; echo "${timings[*]}")" \
  "$(IFS=,; echo "${sizes[*]}")" >"$out/build.json"
cat "$out/build.json"
