#!/bin/sh
# The build is keyed on the Lua headers and the flags (Makefile: STAMP): in one build folder,
#   - the same variables again build nothing;
#   - another LUA_INCDIR (LuaJIT's headers after 5.4's, as `luarocks --lua-version=5.1 make`
#     after a 5.4 build) rebuilds, and the module is then LuaJIT's (no lua_stringtonumber,
#     a Lua 5.3+ function, among its undefined symbols);
#   - another CFLAGS rebuilds.
# Usage: stamp.sh BUILD_DIR    (run by make test; -O0 builds, a few seconds)
dir=${1:-build/stamp}
make=${MAKE:-make}
rm -rf "$dir"
fail=0
# build LUA_INCDIR CFLAGS: sets rebuilt=1 when core.so was written again, else 0
build() {
  mkdir -p "$dir" && touch "$dir/before" && sleep 0.01
  $make --no-print-directory BUILD="$dir" LUA_INCDIR="$1" CFLAGS="$2" "$dir/trigger/core.so" \
    > "$dir/make.log" 2>&1 || { cat "$dir/make.log"; echo "not ok - make failed"; exit 1; }
  if [ "$dir/trigger/core.so" -nt "$dir/before" ]; then rebuilt=1; else rebuilt=0; fi
}
check() { # ok? what
  if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi
}
needs() { nm -D "$dir/trigger/core.so" | grep -q " U lua_stringtonumber$"; }

build /usr/include/lua5.4 -O0
needs; check $? "a 5.4 build uses lua_stringtonumber"
build /usr/include/lua5.4 -O0
check $rebuilt "the same LUA_INCDIR and CFLAGS build nothing"
build /usr/include/luajit-2.1 -O0
check $((1 - rebuilt)) "another LUA_INCDIR rebuilds"
needs && r=1 || r=0
check $r "the rebuilt module is LuaJIT's (no lua_stringtonumber)"
build /usr/include/luajit-2.1 "-O0 -g"
check $((1 - rebuilt)) "another CFLAGS rebuilds"
rm -rf "$dir"
[ $fail -eq 0 ] && echo "stamp.sh: the build follows its headers and flags"
exit $fail
