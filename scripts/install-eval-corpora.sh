#!/usr/bin/env bash
# Install the answer-quality eval's corpora: the Debian packages named in
# tests/data/answers/corpora.json (only when missing) and a copy of exactly the pages listed there
# in DEST/<corpus>/. Usage: install-eval-corpora.sh DEST
# A copy, not the package's folder, so the eval ingests the same fixed pages every run whatever
# else the package ships; files in DEST/<corpus>/ that are not on the list are removed.
set -euo pipefail
dest=${1:?usage: install-eval-corpora.sh DEST}
here=$(cd "$(dirname "$0")" && pwd)
list="$here/../tests/data/answers/corpora.json"
python=${PYTHON:-python3}

# One line per corpus: name, package, root; then its pages, one per line, after a "page" tag.
plan=$("$python" - "$list" <<'EOF'
import json, sys
for corpus in json.load(open(sys.argv[1]))["corpora"]:
    print("corpus", corpus["name"], corpus["package"], corpus["root"])
    for page in corpus["pages"]:
        print("page", page)
EOF
)

packages=$(awk '$1 == "corpus" {print $3}' <<<"$plan")
# shellcheck disable=SC2086 # one word per package
"$here/install-system-deps.sh" $packages

name="" root=""
declare -A wanted=()
finish() {  # drop what the list no longer names from the corpus folder just filled
  [ -n "$name" ] || return 0
  local f
  for f in "$dest/$name"/*; do
    [ -e "$f" ] || continue
    [ -n "${wanted[$(basename "$f")]:-}" ] || rm -f "$f"
  done
  echo "==> eval corpus $name: ${#wanted[@]} pages in $dest/$name"
}
while read -r kind a b c; do
  if [ "$kind" = corpus ]; then
    finish
    name=$a root=$c wanted=()
    mkdir -p "$dest/$name"
    continue
  fi
  src="$root/$a"
  [ -f "$src" ] || { echo "error: $src is not there (package of corpus $name changed?)" >&2; exit 1; }
  wanted[$a]=1
  cmp -s "$src" "$dest/$name/$a" || cp "$src" "$dest/$name/$a"
done <<<"$plan"
finish
