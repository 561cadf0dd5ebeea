#!/usr/bin/env bash
# Create .tools/venv (static checkers, isolated from the app's dependencies) and install
# requirements/tools.txt into it. Re-runs are cheap: a stamp records what was installed.
set -euo pipefail
tools=${TOOLS_DIR:-.tools}
python=${PYTHON:-python3}
req=requirements/tools.txt
stamp="$tools/venv/.stamp-$(sha256sum "$req" | cut -c1-16)"
[ -f "$stamp" ] && exit 0
echo "==> installing static checkers into $tools/venv"
[ -x "$tools/venv/bin/python" ] || "$python" -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install -qq --disable-pip-version-check -r "$req"
rm -f "$tools"/venv/.stamp-*
touch "$stamp"
