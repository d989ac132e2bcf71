# lib.sh: helpers for the command-line tests (tests/cli_*.sh), sourced by each.
# Each `t_ok NAME` / `t_fail NAME WHY` / `t_skip NAME WHY` prints one line; `t_done` prints
# the tally "# N passed, N failed, N skipped" that tests/run.sh adds up.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BN_BIN:-$TOP/bin}   # BN_BIN: another build (make test-asan)
PATH="$BIN:$PATH"
SHARED_DATA=${BN_DATA:-$TOP/../shared/data}
SAMPLE="$SHARED_DATA/cifar-10-sample.tar.gz"
T=$(mktemp -d "${TMPDIR:-/tmp}/bntest.XXXXXX")
trap 'rm -rf "$T"' EXIT
_p=0; _f=0; _s=0
t_ok()   { _p=$((_p+1)); echo "ok - $1"; }
t_fail() { _f=$((_f+1)); echo "FAIL - $1: $2"; }
t_skip() { _s=$((_s+1)); echo "skip - $1: $2"; }
t_done() { echo "# $_p passed, $_f failed, $_s skipped"; [ "$_f" -eq 0 ]; }
# expect NAME WANTED_STATUS CMD...: runs CMD (stderr to $T/err), checks its exit status.
expect() {
  _n=$1; _want=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; _rc=$?
  if [ "$_rc" -eq "$_want" ]; then t_ok "$_n"; else
    t_fail "$_n" "exit $_rc, wanted $_want; stderr: $(head -c 300 "$T/err")"; fi
}
# expect_err NAME WANTED_STATUS PATTERN CMD...: as expect, and stderr must match PATTERN.
expect_err() {
  _n=$1; _want=$2; _pat=$3; shift 3
  "$@" >"$T/out" 2>"$T/err"; _rc=$?
  if [ "$_rc" -ne "$_want" ]; then
    t_fail "$_n" "exit $_rc, wanted $_want; stderr: $(head -c 300 "$T/err")"
  elif ! grep -qE "$_pat" "$T/err"; then
    t_fail "$_n" "stderr lacks /$_pat/: $(head -c 300 "$T/err")"
  else t_ok "$_n"; fi
}
# check NAME CONDITION-COMMAND...: passes when the command succeeds.
check() { _n=$1; shift; if "$@" >/dev/null 2>&1; then t_ok "$_n"; else t_fail "$_n" "false: $*"; fi; }
have_sample() { [ -r "$SAMPLE" ]; }
# The Python that has Debian's python3-msgpack (a pyenv python3 on PATH may lack it).
PY=python3
for _c in /usr/bin/python3 python3; do
  if "$_c" -c 'import msgpack' 2>/dev/null; then PY=$_c; break; fi
done
have_pymsgpack() { "$PY" -c 'import msgpack' 2>/dev/null; }
