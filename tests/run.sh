#!/bin/sh
# Runs every unit test binary (build/tests/test_*) and every command-line test
# (tests/cli_*.sh), adds up their tallies, and closes with "N passed, N failed".
# usage: tests/run.sh [PATTERNS]  (only tests whose file name contains one of the
#                                 space-separated PATTERNS)
cd "$(dirname "$0")/.." || exit 2
pat=${1:-}
log=$(mktemp); trap 'rm -f "$log"' EXIT
P=0; F=0; S=0; broken=""
for t in "${BN_BUILD:-build}"/tests/test_* "${BN_BUILD:-build}"/sim/tests/test_* tests/cli_*.sh; do
  # BN_BUILD: another build (make test-asan); sim/: the CUDA backend under tests/cudasim (make sim)
  [ -e "$t" ] || continue
  case "$t" in *.d|*.o) continue;; esac
  if [ -n "$pat" ]; then
    hit=; for p in $pat; do case "$t" in *"$p"*) hit=1;; esac; done
    [ -n "$hit" ] || continue
  fi
  echo "== $t"
  case "$t" in *.sh) sh "$t" >"$log" 2>&1;; *) "./$t" >"$log" 2>&1;; esac
  rc=$?
  cat "$log"
  tally=$(grep -E '^# [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [ -z "$tally" ]; then
    echo "FAIL - $t: exited $rc without a tally (crashed?)"; F=$((F+1)); broken="$broken $t"; continue
  fi
  set -- $tally
  P=$((P+$2)); F=$((F+$4)); S=$((S+${6:-0}))
  [ "$rc" -ne 0 ] && [ "$4" -eq 0 ] && { echo "FAIL - $t: exit $rc"; F=$((F+1)); }
done
echo
[ -n "$broken" ] && echo "broken:$broken"
echo "$P passed, $F failed, $S skipped"
[ "$F" -eq 0 ]
