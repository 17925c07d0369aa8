#!/bin/sh
# make test-rock: the rock as a user gets it, on every Lua it claims (issue 31). For Lua 5.1
# (run on LuaJIT, as OpenResty does), 5.3 and 5.4, each into a fresh tree:
#   - `luarocks install --deps-mode=none` of the source rock (make dist), with the Lua headers
#     LuaRocks' own configuration names (Debian's for 5.1: /usr/include/lua5.1, PUC 5.1's: the
#     C core keeps to the 5.1 API, which LuaJIT's ABI shares);
#   - `luarocks make --deps-mode=none` of the release rockspec in the rock's source tree, as
#     from a checkout; for 5.1 with LUA_INCDIR=/usr/include/luajit-2.1 (LuaJIT's own headers,
#     what OpenResty's LuaRocks uses);
# then tools/check/rock_smoke.lua in that interpreter: the library and C core load from the
# tree, and a tag subscription follows a run of the local server (--scenario demo).
# --deps-mode=none: there is no rocks server here; lua-cjson is Debian's (mk/packages.txt),
# which LuaRocks cannot see (the rockspec's description says so to users).
# Each compile must get LuaRocks' CFLAGS and no -Werror. Prints TAP and "N passed, N failed".
#   sh tools/check/rock.sh build/dist/trigger-realtime-X.Y.Z-1.src.rock
set -u
cd "$(dirname "$0")/../.." || exit 1
rock=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[ -f "$rock" ] || { echo "rock.sh: no $1 (make dist)"; exit 1; }
version=$(sed -n 's/^M\._VERSION = "\(.*\)"$/\1/p' lua/trigger/init.lua)
spec=trigger-realtime-$version-1.rockspec
unset LUA_PATH LUA_CPATH LUA_PATH_5_3 LUA_CPATH_5_3 LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT

tmp=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

passed=0 failed=0
result() { # ok|not ok, description
  echo "$1 - $2"
  if [ "$1" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

# The local server, as examples/demo.sh starts it.
server/bin/trigger-realtime-server --port 0 --scenario demo > "$tmp/server.out" 2> "$tmp/server.err" &
server=$!
for _ in $(seq 1 200); do
  grep -q '^listening ' "$tmp/server.out" && break
  sleep 0.05
done
url=$(sed -n 's/^listening //p' "$tmp/server.out" | head -n 1)
if [ -z "$url" ]; then
  result "not ok" "the local server starts"; sed 's/^/#   /' "$tmp/server.err"
  echo "1..$((passed + failed))"; echo "$passed passed, $failed failed"; exit 1
fi

# The source tree of the rock, for `luarocks make`.
mkdir "$tmp/src"
(cd "$tmp/src" && unzip -q "$rock") || result "not ok" "unzip $rock"

# build LABEL LUAVERSION LOG INCDIR_WANTED: the build log's compile lines got LuaRocks' CFLAGS,
# the wanted Lua headers, and no -Werror.
check_build() {
  label=$1 log=$2 incdir=$3
  compiles=$(grep -c -- ' -c ' "$log")
  if [ "$compiles" -gt 0 ] && ! grep -q -- '-Werror' "$log" &&
     [ "$(grep -- ' -c ' "$log" | grep -c -- "-O2 -fPIC -I$incdir ")" -eq "$compiles" ]; then
    result ok "$label: $compiles compiles, each with LuaRocks' CFLAGS and -I$incdir, no -Werror"
  else
    result "not ok" "$label: $compiles compiles, each with LuaRocks' CFLAGS and -I$incdir, no -Werror"
    grep -- ' -c ' "$log" | head -n 3 | sed 's/^/#   /'
  fi
}

smoke() { # label luaversion interpreter tree
  out=$( eval "$(luarocks --lua-version="$2" path --tree "$4")"
         cd "$tmp" && timeout 120 "$3" "$OLDPWD/tools/check/rock_smoke.lua" "$1" "$4" "$version" "$url" 2>&1 )
  printf '%s\n' "$out" | while IFS= read -r line; do echo "$line"; done
  p=$(printf '%s\n' "$out" | grep -c '^ok ')
  f=$(printf '%s\n' "$out" | grep -c '^not ok ')
  passed=$((passed + p)); failed=$((failed + f))
  [ "$p" -gt 0 ] || result "not ok" "$1: the smoke script ran"
}

for v in 5.1 5.3 5.4; do
  case $v in
    5.1) interp=luajit; make_incdir=/usr/include/luajit-2.1 ;;
    *) interp=lua$v; make_incdir=/usr/include/lua$v ;;
  esac
  default_incdir=$(luarocks --lua-version=$v config variables.LUA_INCDIR 2>/dev/null)

  label="$v ($interp) luarocks install of the source rock"
  tree=$tmp/tree-$v-install
  if timeout 300 luarocks --lua-version=$v install --tree="$tree" --deps-mode=none "$rock" > "$tmp/$v-install.log" 2>&1; then
    result ok "$label"
    check_build "$label" "$tmp/$v-install.log" "$default_incdir"
    smoke "$label" $v $interp "$tree"
  else
    result "not ok" "$label"; tail -n 15 "$tmp/$v-install.log" | sed 's/^/#   /'
  fi

  label="$v ($interp) luarocks make of $spec"
  tree=$tmp/tree-$v-make
  extra=
  [ $v = 5.1 ] && extra="LUA_INCDIR=$make_incdir"
  # shellcheck disable=SC2086
  if (cd "$tmp/src/trigger-realtime" && timeout 300 luarocks --lua-version=$v make --tree="$tree" --deps-mode=none "../$spec" $extra) > "$tmp/$v-make.log" 2>&1; then
    result ok "$label"
    check_build "$label" "$tmp/$v-make.log" "$make_incdir"
    smoke "$label" $v $interp "$tree"
  else
    result "not ok" "$label"; tail -n 15 "$tmp/$v-make.log" | sed 's/^/#   /'
  fi
  rm -f "$tmp/src/trigger-realtime/csrc/"*.o "$tmp/src/trigger-realtime/csrc/lib/"*.o
  rm -rf "$tmp/src/trigger-realtime/trigger"
done

echo "1..$((passed + failed))"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
