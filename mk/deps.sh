#!/bin/sh
# make deps (run by make demo and make test; .ci/run too): install the Debian packages of
# mk/packages.txt that are missing. Cheap when nothing is: one dpkg-query, no apt-get. As root
# it runs apt-get; otherwise it prints the one command to run as root and fails.
# Not on Debian (no dpkg-query): it says so and lets make go on.
cd "$(dirname "$0")/.." || exit 1
list=mk/packages.txt
packages=$(sed 's/#.*//' "$list" | tr -s ' \t\n' ' ')
if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "make deps: not a Debian system; make sure the equivalents of $list are installed" >&2
  exit 0
fi
# shellcheck disable=SC2086
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' $packages 2>/dev/null |
  sed -n 's/ installed$//p')
installed=" $(echo "$installed" | tr '\n' ' ') "
missing=
for p in $packages; do
  case "$installed" in
    *" $p "*) ;;
    *) missing="$missing $p" ;;
  esac
done
[ -z "$missing" ] && exit 0
missing=${missing# }
if [ "$(id -u)" -ne 0 ]; then
  echo "make deps: missing Debian packages: $missing" >&2
  echo "run this as root, then run make again:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends $missing" >&2
  exit 1
fi
echo "make deps: installing $missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || exit 1
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null || exit 1
echo "make deps: done"
