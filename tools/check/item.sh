#!/bin/sh
# One item of `make check`: run a command with its output in a log, record the verdict.
# Usage: item.sh RESULTS LOGDIR [--build] NAME -- COMMAND [ARGS...]
#   RESULTS  file that gets one line per item: "ok NAME SECONDS" or "not ok NAME SECONDS LOG"
#   --build  a build step: recorded only when it fails (it is not a check of its own)
# Prints one status line (and the end of the log on failure); exits with the command's status.
results=$1 logdir=$2
shift 2
build=0
if [ "$1" = "--build" ]; then build=1; shift; fi
name=$1
shift
[ "$1" = "--" ] && shift
mkdir -p "$logdir"
log="$logdir/$(echo "$name" | tr ':/ ' '---').log"
start=$(date +%s)
if [ "$build" -eq 0 ]; then printf '%-22s ... ' "$name"; fi
"$@" > "$log" 2>&1
status=$?
secs=$(( $(date +%s) - start ))
if [ "$status" -eq 0 ]; then
  if [ "$build" -eq 0 ]; then
    echo "ok ($secs s)"
    echo "ok $name $secs" >> "$results"
  fi
else
  [ "$build" -eq 1 ] && printf '%-22s ... ' "$name"
  echo "FAILED (exit $status, $secs s; log: $log)"
  echo "not ok $name $secs $log" >> "$results"
  echo "---- last lines of $log"
  tail -n 40 "$log" | sed 's/^/| /'
  echo "----"
fi
exit "$status"
