#!/usr/bin/env bash
# The UI (ui/): install its npm packages, build the static export (ui/out), or check it.
# Usage: build-ui.sh [build|install|check]   (default: build)
#   install  npm ci into ui/node_modules, only when package.json or the lock changed
#   build    install, then `next build` → ui/out, only when an input of the build changed
#   check    install, then eslint, tsc --noEmit and vitest (make test-ui)
# `npm ci`, not `npm install`: it installs exactly what the committed package-lock.json says and
# never rewrites it (`npm install` added other platforms' optional entries, so a checkout was dirty
# after one `make up`; issue 16). To change a dependency: `npm install <pkg>` in ui/ by hand and
# commit the lock. Stamps make both steps incremental, so `make up` twice rebuilds nothing.
set -euo pipefail

cd "$(dirname "$0")/../ui"
action=${1:-build}
export NEXT_TELEMETRY_DISABLED=1

command -v node >/dev/null || { echo "error: Node.js >= 20.19 is needed to build the UI (node not found on PATH)" >&2; exit 1; }
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || { echo "error: Node.js >= 20.19 is needed to build the UI (found $(node --version))" >&2; exit 1; }

hash_files() { sha256sum "$@" 2>/dev/null | sha256sum | cut -c1-64; }

install_stamp=node_modules/.voicebot-install-stamp
deps_hash() { hash_files package.json package-lock.json; }

install() {
  if [ -d node_modules ] && [ -f "$install_stamp" ] && [ "$(cat "$install_stamp")" = "$(deps_hash)" ]; then
    return
  fi
  echo "==> ui: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  deps_hash >"$install_stamp"
}

build_stamp=out/.voicebot-build-stamp
build_hash() {
  {
    find app components hooks lib public -type f -print0 | sort -z | xargs -0 sha256sum
    sha256sum next.config.ts tsconfig.json package.json package-lock.json
    env | grep '^NEXT_PUBLIC_' | sort || true
  } | sha256sum | cut -c1-64
}

build() {
  install
  local want
  want=$(build_hash)
  if [ -f "$build_stamp" ] && [ "$(cat "$build_stamp")" = "$want" ]; then
    echo "==> ui: ui/out is up to date"
    return
  fi
  echo "==> ui: next build → ui/out"
  rm -rf out
  node_modules/.bin/next build
  echo "$want" >"$build_stamp"
}

check() {
  install
  echo "==> ui: eslint"
  node_modules/.bin/eslint --max-warnings=0 .
  echo "==> ui: tsc --noEmit"
  node_modules/.bin/tsc --noEmit
  echo "==> ui: vitest"
  node_modules/.bin/vitest run
}

case "$action" in
  install) install ;;
  build) build ;;
  check) check ;;
  *) echo "usage: $0 [build|install|check]" >&2; exit 2 ;;
esac
