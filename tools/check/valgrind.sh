#!/bin/sh
# Run a command under valgrind memcheck and judge the result.
# Usage: valgrind.sh "VALGRIND [OPTIONS]" LOGPREFIX -- COMMAND [ARGS...]
# Fails when
#   - valgrind reports an error (invalid read/write, uninitialised value, bad free, a definite
#     leak anywhere: --error-exitcode), or the command itself fails;
#   - any "definitely lost" or "indirectly lost" loss record has a frame in our code (the
#     trigger/core.so and trigger/curl.so modules, or a csrc/ source file), whatever its size.
# The full valgrind log is LOGPREFIX.log; our leak records are copied to stdout.
vg=$1 prefix=$2
shift 2
[ "$1" = "--" ] && shift
log="$prefix.log"
mkdir -p "$(dirname "$log")"
rm -f "$log"
# shellcheck disable=SC2086
$vg --log-file="$log" "$@"
status=$?

# Our source files by name (csrc/lib/*.c: the plain C core; csrc/l*.c: the bindings).
srcs=$(cd "$(dirname "$0")/../../csrc" && ls ./*.c lib/*.c | sed 's|^\./||; s|^lib/||; s|\.c$||' | paste -sd '|' -)
ours=$(awk -v srcs="$srcs" '
  # A loss record starts with "==PID== N bytes in M blocks are <kind> lost in loss record"
  # and ends at the next line holding only "==PID==".
  /are (definitely|indirectly) lost in loss record/ { inrec = 1; rec = $0 "\n"; mine = 0; next }
  inrec && /^==[0-9]+== *$/ { if (mine) printf "%s\n", rec; inrec = 0; next }
  inrec {
    rec = rec $0 "\n"
    if ($0 ~ /trigger\/(core|curl)\.so|csrc\// || $0 ~ ("\\((" srcs ")\\.c:[0-9]+\\)")) mine = 1
  }
  END { if (inrec && mine) printf "%s\n", rec }
' "$log")

echo "# valgrind log: $log"
grep -E '(definitely|indirectly|possibly) lost:|still reachable:|ERROR SUMMARY' "$log" | sed 's/^==[0-9]*== */# /'
if [ -n "$ours" ]; then
  echo "# leaks from our code:"
  echo "$ours" | sed 's/^==[0-9]*== */#   /'
  echo "# valgrind.sh: FAILED: definite/indirect leaks from our code"
  exit 1
fi
if [ "$status" -ne 0 ]; then
  if grep -q 'ERROR SUMMARY: [1-9]' "$log"; then
    echo "# valgrind.sh: FAILED: memcheck errors (see $log):"
    awk '/^==[0-9]+== (Invalid|Conditional|Use of uninit|Mismatched|Syscall param|Source and destination|Argument)/ {p=25} p>0 {print; p--}' "$log" | head -n 120 | sed 's/^==[0-9]*== */#   /'
  else
    echo "# valgrind.sh: FAILED: the command exited with status $status"
  fi
  exit "$status"
fi
echo "# valgrind.sh: clean"
