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
# ckclose NAME A B INIT [PICK_A]: the last checkpoint of B (or of A: section PICK_A) against
# A's, tensor by tensor (params, BN running stats, optimizer state): the same epoch and step,
# the same tensors, and each f32 one within CK_TOL (default 1e-4) of how far training moved
# it from INIT (max|a - b| <= CK_TOL * max|a - INIT| + 1e-7); some parameter must have moved.
ckclose() {
  _name=$1; shift
  if "$PY" - "$@" >"$T/cmp" 2>&1 <<'EOF'
import msgpack, os, struct, sys
tol = float(os.environ.get("CK_TOL", "1e-4"))
def section(path, pick):
    secs = []
    for o in msgpack.Unpacker(open(path, "rb"), raw=False, strict_map_key=False):
        if isinstance(o, dict) and o.get("kind") == "checkpoint": secs.append((o, {}))
        elif isinstance(o, dict) and "data" in o and "name" in o and secs: secs[-1][1][o["name"]] = o
    return secs[pick]
f32 = lambda t: struct.unpack("<%df" % (len(t["data"]) // 4), t["data"])
pick = int(sys.argv[4]) if len(sys.argv) > 4 else -1
ha, a = section(sys.argv[1], pick); hb, b = section(sys.argv[2], -1); _, init = section(sys.argv[3], -1)
if (ha["epoch"], ha["step"]) != (hb["epoch"], hb["step"]):
    sys.exit("epoch/step differ: %s vs %s" % ((ha["epoch"], ha["step"]), (hb["epoch"], hb["step"])))
if sorted(a) != sorted(b): sys.exit("different tensors")
worst, where, trained = 0.0, "", False
for name, t in a.items():
    if t["dtype"] != "f32" or t["role"] not in ("param", "buffer", "opt"): continue
    x, y = f32(t), f32(b[name])
    x0 = f32(init[name]) if name in init else [0.0] * len(x)
    moved = max(abs(p - r) for p, r in zip(x, x0))
    trained = trained or (t["role"] == "param" and moved > 0)
    diff = max(abs(p - q) for p, q in zip(x, y))
    if moved > 0 and diff / moved > worst: worst, where = diff / moved, name
    if diff > tol * moved + 1e-7: sys.exit("%s: differs by %.3g, moved %.3g in training" % (name, diff, moved))
if not trained: sys.exit("no parameter moved: nothing was trained")
print("worst difference %.2g of the update (%s)" % (worst, where or "all equal"))
EOF
  then t_ok "$_name ($(cat "$T/cmp"))"; else t_fail "$_name" "$(tail -c 400 "$T/cmp")"; fi
}
