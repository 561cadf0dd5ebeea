#!/usr/bin/env bash
# Installs what `make test-infra` needs (owned by the infra tier).
set -euo pipefail
