# make bench: the performance measurements of issues 8, 15, 16 and 17 (fan-out in one process and
# in nginx), each against a baseline
# measured in the same run (local server in its own process; curl, luasocket, plain cjson, or the
# unshared case). Prints the table and writes bench/RESULTS.md; about 9 minutes. Not part of
# make test or CI. See bench/README.md.
#
#   make bench            everything (knobs: BENCH_REPS, BENCH_MEM_UPDATES, ... in bench/run.lua)
#   make bench-profile    callgrind instruction counts of the throughput test, client vs. bare,
#                         replayed offline from the pages the last make bench saved

BENCH_LUA_ENV = LUA_PATH="lua/?.lua;lua/?/init.lua;bench/?.lua;;" LUA_CPATH="$(BUILD)/?.so;;"
BENCH_PAGES  ?= bench/tmp/sync/pages

.PHONY: bench bench-profile
bench: all
	@lua5.4 bench/run.lua

bench-profile: all
	@test -f $(BENCH_PAGES)/page1.json || { echo "bench-profile: run make bench first (it saves the pages)"; exit 1; }
	@for m in client bare; do \
	  $(BENCH_LUA_ENV) valgrind --tool=callgrind --callgrind-out-file=bench/tmp/callgrind.$$m \
	    lua5.4 bench/profile_sync.lua $(BENCH_PAGES) $$m 2>&1 | sed -n "s/^RESULT /$$m: /p; s/^==[0-9]*== I *refs: */$$m instructions: /p"; \
	done; echo "callgrind_annotate bench/tmp/callgrind.client | head -40"
