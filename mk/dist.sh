#!/bin/sh
# make dist: the source rock of the release, offline. `luarocks pack ROCKSPEC` would clone the
# rockspec's git URL at its tag; this makes the same thing from this tree instead: a zip holding
# the release rockspec and a folder "trigger-realtime" (the name LuaRocks gives a git source) with
# every file git tracks, as it is in the tree now. The release rockspec is
# rockspec/trigger-realtime-X.Y.Z-1.rockspec with X.Y.Z = trigger._VERSION.
#   DIST_DIR  where the rock goes (default build/dist)
set -eu
cd "$(dirname "$0")/.."
git rev-parse --git-dir >/dev/null 2>&1 || { echo "make dist: needs a git checkout (it packs git's files)" >&2; exit 1; }
version=$(sed -n 's/^M\._VERSION = "\(.*\)"$/\1/p' lua/trigger/init.lua)
spec=rockspec/trigger-realtime-$version-1.rockspec
[ -f "$spec" ] || { echo "make dist: no $spec (trigger._VERSION is \"$version\")" >&2; exit 1; }
out=${DIST_DIR:-build/dist}
rock=trigger-realtime-$version-1.src.rock
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/trigger-realtime"
git ls-files | while IFS= read -r f; do [ -e "$f" ] && printf '%s\n' "$f"; done |
  tar -cf - -T - | tar -xf - -C "$tmp/trigger-realtime"
cp "$spec" "$tmp/"
(cd "$tmp" && zip -q -r -X "$rock" "$(basename "$spec")" trigger-realtime)
mkdir -p "$out"
mv "$tmp/$rock" "$out/$rock"
changed=$(git status --porcelain --untracked-files=no | wc -l)
note=
[ "$changed" -eq 0 ] || note=" (from the working tree: $changed tracked files differ from HEAD)"
git rev-parse -q --verify "refs/tags/v$version" >/dev/null || note="$note (no tag v$version yet)"
echo "make dist: $out/$rock$note"
