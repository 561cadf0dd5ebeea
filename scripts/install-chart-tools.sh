#!/usr/bin/env bash
# Installs what `make test-chart` needs (owned by the chart tier).
set -euo pipefail
