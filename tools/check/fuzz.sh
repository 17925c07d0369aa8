#!/bin/sh
# Run libFuzzer targets for a fixed time each and sum up what they did.
# Usage: fuzz.sh RESULTS LOGDIR FUZZ_BUILD TARGET...
# Environment: MAKE (to build build/fuzz/TARGET), FUZZ_SECONDS (default 60 per target),
#   FUZZ_JOBS (targets run at once, default 1), FUZZ_REPORT=1 (also write fuzz/RESULTS.md).
#
# Each target reads its checked-in seeds (fuzz/corpus/TARGET, never written) and grows a working
# corpus in fuzz/corpus-work/TARGET (git-ignored, kept between runs so later runs start further
# on). A crash, a leak, a sanitizer report, a failed assertion or an input slower than 10 s fails
# the target; the input that did it is kept as LOGDIR/fuzz-artifacts/TARGET-crash-*.
# One line per target goes to RESULTS ("ok fuzz:TARGET S" / "not ok fuzz:TARGET S LOG").
results=$1 logdir=$2 fbuild=$3
shift 3
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
make=${MAKE:-make}
mkdir -p "$logdir/fuzz-artifacts"

fuzz_one() {
  t=$1
  log="$logdir/fuzz-$t.log"
  res="$logdir/fuzz-$t.result"
  rm -f "$res"
  if ! $make --no-print-directory "$fbuild/$t" > "$logdir/fuzz-build-$t.log" 2>&1; then
    echo "build-failed 0 0 0 - - $logdir/fuzz-build-$t.log" > "$res"
    return
  fi
  mkdir -p "fuzz/corpus-work/$t" "fuzz/corpus/$t"
  dict=""
  [ -f "fuzz/$t.dict" ] && dict="-dict=fuzz/$t.dict"
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$fbuild/$t" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$logdir/fuzz-artifacts/$t-" $dict \
    "fuzz/corpus-work/$t" "fuzz/corpus/$t" > "$log" 2>&1
  status=$?
  wall=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  [ -z "$runs" ] && runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  [ -z "$secs" ] && secs=$wall
  last=$(grep -a '^#[0-9]' "$log" | tail -n 1)
  cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/\1\/\2/p')
  corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p')
  verdict=ok
  if [ "$status" -ne 0 ] || grep -aq 'ERROR: libFuzzer\|ERROR: AddressSanitizer\|runtime error:' "$log"; then
    verdict=crashed
  fi
  echo "$verdict ${runs:-0} ${secs:-0} $wall ${cov:--} ${corp:--} $log" > "$res"
}

# Run the targets, FUZZ_JOBS at a time.
pending=""
n=0
for t in "$@"; do
  echo "fuzz:$t ... ${seconds} s"
  fuzz_one "$t" &
  pending="$pending $!"
  n=$((n + 1))
  if [ "$n" -ge "$jobs" ]; then
    for p in $pending; do wait "$p"; done
    pending="" n=0
  fi
done
for p in $pending; do wait "$p"; done

# Sum up, in the order given.
table=$(mktemp)
trap 'rm -f "$table"' EXIT
failed=0
printf '%-18s %-8s %12s %7s %9s %-11s %-11s %5s\n' target result executions seconds exec/s cov/ft corpus seeds > "$table"
for t in "$@"; do
  res="$logdir/fuzz-$t.result"
  v=crashed runs=0 secs=0 wall=0 cov=- corp=- log="$logdir/fuzz-$t.log"
  [ -f "$res" ] && read -r v runs secs wall cov corp log < "$res"
  rate=0
  [ "$secs" -gt 0 ] 2>/dev/null && rate=$((runs / secs))
  seeds=$(find "fuzz/corpus/$t" -type f 2>/dev/null | wc -l)
  printf '%-18s %-8s %12s %7s %9s %-11s %-11s %5s\n' "$t" "$v" "$runs" "$secs" "$rate" "$cov" "$corp" "$seeds" >> "$table"
  if [ "$v" = ok ]; then
    echo "ok fuzz:$t $wall" >> "$results"
  else
    failed=$((failed + 1))
    echo "not ok fuzz:$t $wall $log" >> "$results"
    echo "fuzz:$t FAILED ($v; log: $log)"
    grep -a -m1 -B2 -A25 'ERROR: \|runtime error:\|fuzz_[a-z0-9_]*: ' "$log" | head -n 40 | sed 's/^/| /'
    ls "$logdir/fuzz-artifacts/$t-"* 2>/dev/null | sed 's/^/| input: /'
  fi
done
echo
echo "fuzzing, ${seconds} s per target:"
cat "$table"

if [ "${FUZZ_REPORT:-0}" = 1 ]; then
  {
    echo "# Fuzzing results"
    echo
    echo "Written by \`make fuzz FUZZ_REPORT=1\` (tools/check/fuzz.sh); \`make check\` runs the same targets."
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- time per target: ${seconds} s (FUZZ_SECONDS), ${jobs} target(s) at a time on $(nproc) core(s)"
    echo "- fuzzer: $(clang --version 2>/dev/null | head -n 1), libFuzzer + ASan + UBSan"
    echo "- executions: libFuzzer's stat::number_of_executed_units; seconds: its \"Done N runs in S second(s)\""
    echo "- cov/ft: coverage points and features at the end; corpus: inputs/bytes in fuzz/corpus-work"
    echo
    echo '```'
    cat "$table"
    echo '```'
  } > fuzz/RESULTS.md
  echo "wrote fuzz/RESULTS.md"
fi
[ "$failed" -eq 0 ]
