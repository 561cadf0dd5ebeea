#!/usr/bin/env bash
# Create .tools/venv (static checkers, isolated from the app's dependencies) and install
# requirements/tools.lock into it (hash-checked; `make lock` makes it from requirements/tools.txt).
# Re-runs are cheap: a stamp records what was installed.
set -euo pipefail
tools=${TOOLS_DIR:-.tools}
python=${PYTHON:-python3}
lock=requirements/tools.lock
stamp="$tools/venv/.stamp-$(sha256sum "$lock" | cut -c1-16)"
[ -f "$stamp" ] && exit 0
echo "==> installing static checkers into $tools/venv"
[ -x "$tools/venv/bin/python" ] || "$python" -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install -qq --disable-pip-version-check --require-hashes -r "$lock"
rm -f "$tools"/venv/.stamp-*
touch "$stamp"
