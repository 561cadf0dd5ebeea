#!/usr/bin/env bash
# Installs what `make test-infra` needs (owned by the infra tier).
#   - .tools/venv: checkov, zizmor and the other static checkers from requirements/tools.lock
#   - amtool (Debian prometheus-alertmanager): checks the Alertmanager config Terraform composes
# terraform itself cannot be installed from the reachable registries; the tests that need it
# skip with a message when it is absent (the hosted workflow runs init/validate/tflint).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-tool-venv.sh
scripts/install-system-deps.sh prometheus-alertmanager

if ! command -v terraform >/dev/null; then
  echo "==> note: no terraform binary on PATH; terraform fmt and evaluation checks will be skipped"
fi
