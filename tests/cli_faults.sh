#!/bin/sh
# cli_faults.sh: fault injection (issue #7). The disk fills up while a checkpoint or a dataset
# is written (a 64 KiB tmpfs when mounting is allowed, else a file-size limit, and /dev/full);
# the consumer of a pipe dies (SIGPIPE); SIGTERM mid-epoch (SIGINT is in cli_train.sh) and a
# resume bit-identical to the straight run; kill -9 mid-run leaves the previous file whole;
# hostile headers (counts, shapes, short data, duplicate names and keys, NaN/Inf weights) are
# refused naming the field, under a 1 GB address-space limit (so never by a large allocation);
# divergence stops naming the step and leaves the last good checkpoint. docs/hardening.md
# lists every case.
. "$(dirname "$0")/lib.sh"

for p in net-init net-train net-inspect net-eval net-freeze cifar-synth cifar-subset; do
  [ -x "$BIN/$p" ] || { t_skip "all" "$p not built"; t_done; exit; }
done

net-init --depth 8 --width 4 --seed 1 -o "$T/d8.ck" 2>/dev/null
cifar-synth --count 200 --seed 1 --pattern gradient -o "$T/syn.ds" 2>/dev/null
cifar-synth --count 3000 --seed 2 -o "$T/big.ds" 2>/dev/null
# no_temp DIR: no "*.tmp.*" file left in DIR
no_temp() { [ -z "$(find "$1" -maxdepth 1 -name '*.tmp.*' 2>/dev/null)" ]; }
# lines FILE: its line count, 0 when it does not exist yet
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }

# ---- disk full ------------------------------------------------------------------------------
# full_disk NAME DIR: the cases, with DIR a place that takes about 64 KiB (d8.ck, 25 KB, fits)
full_disk() {
  _how=$1; _d=$2
  cp "$T/d8.ck" "$_d/x.ck"
  expect_err "disk full ($_how): net-init says so" 1 "writing $_d/x.ck: (No space left on device|File too large)" \
    net-init --depth 20 -o "$_d/x.ck"
  check "disk full ($_how): net-init: previous file intact" cmp -s "$T/d8.ck" "$_d/x.ck"
  check "disk full ($_how): net-init: no temporary left" no_temp "$_d"
  expect_err "disk full ($_how): net-train says so" 1 "(No space left on device|File too large)" \
    net-train "$T/d8.ck" --train "$T/syn.ds" --epochs 3 --batch 50 --threads 1 -o "$_d/x.ck"
  check "disk full ($_how): net-train: previous checkpoint intact" cmp -s "$T/d8.ck" "$_d/x.ck"
  check "disk full ($_how): net-train: no temporary left" no_temp "$_d"
  check "disk full ($_how): net-train: previous checkpoint verifies" net-inspect --verify "$_d/x.ck"
  expect_err "disk full ($_how): cifar-subset says so" 1 "(No space left on device|File too large)" \
    cifar-subset --first 1000 "$T/big.ds" -o "$_d/x.ck"
  check "disk full ($_how): cifar-subset: previous file intact" cmp -s "$T/d8.ck" "$_d/x.ck"
  check "disk full ($_how): cifar-subset: no temporary left" no_temp "$_d"
  expect_err "disk full ($_how): net-freeze says so" 1 "(No space left on device|File too large)" \
    net-freeze --train bn "$T/big.ck" -o "$_d/x.ck"
  check "disk full ($_how): net-freeze: previous file intact" cmp -s "$T/d8.ck" "$_d/x.ck"
  check "disk full ($_how): net-freeze: no temporary left" no_temp "$_d"
}
net-init --depth 20 -o "$T/big.ck" 2>/dev/null
mkdir -p "$T/small"
if mount -t tmpfs -o size=64k bntest "$T/small" 2>/dev/null; then
  full_disk tmpfs "$T/small"
  umount "$T/small"
else
  t_skip "disk full (tmpfs)" "mounting a tmpfs is not allowed here (not root?); the file-size limit below stands in"
fi
# a file-size limit: SIGXFSZ ignored (as a careful parent would), writes then fail with EFBIG
( _p=0; _f=0; _s=0; trap '' XFSZ; ulimit -f 64 2>/dev/null && { full_disk "ulimit -f" "$T/small"; t_done; } ) >"$T/ulimit.out" 2>&1
cat "$T/ulimit.out"
if grep -q '^# ' "$T/ulimit.out"; then
  set -- $(grep '^# ' "$T/ulimit.out"); _p=$((_p+$2)); _f=$((_f+$4)); _s=$((_s+$6))
else
  t_skip "disk full (ulimit -f)" "ulimit -f refused"
fi
expect_err "/dev/full as stdout: net-init" 1 "writing stdout: No space left on device" sh -c 'net-init --depth 8 > /dev/full'
expect_err "/dev/full as -o: cifar-synth" 1 "No space left on device" cifar-synth --count 500 -o /dev/full
expect_err "/dev/full as stdout: net-inspect (text)" 1 "No space left on device|write error" sh -c "net-inspect '$T/big.ck' > /dev/full"
expect_err "/dev/full as stdout: net-eval (text)" 1 "No space left on device|write error" sh -c "net-eval '$T/d8.ck' '$T/syn.ds' > /dev/full"

# ---- SIGPIPE: the consumer dies -----------------------------------------------------------
# piped NAME CMD...: runs CMD | head -c 1, records CMD's status and stderr
piped() {
  _n=$1; shift
  { "$@" 2>"$T/pipe.err"; echo $? >"$T/pipe.rc"; } | head -c 1 >/dev/null
  _rc=$(cat "$T/pipe.rc")
  if [ "$_rc" -eq 0 ]; then t_fail "$_n" "exit 0 although its output was cut"
  elif [ -s "$T/pipe.err" ]; then t_fail "$_n" "messages on stderr: $(head -c 200 "$T/pipe.err")"
  else t_ok "$_n (exit $_rc, quiet)"; fi
}
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do cat "$T/d8.ck"; done > "$T/many.ck"
piped "SIGPIPE: cifar-subset | head" cifar-subset --first 2000 -q "$T/big.ds"
piped "SIGPIPE: cifar-synth | head" cifar-synth --count 3000
piped "SIGPIPE: net-init | head" net-init --depth 56
piped "SIGPIPE: net-freeze | head" net-freeze --train bn "$T/big.ck"
piped "SIGPIPE: net-inspect (30 checkpoints) | head" net-inspect "$T/many.ck"
piped "SIGPIPE: net-inspect --format json | head" net-inspect --format json "$T/many.ck"
# a parent that ignores SIGPIPE (some job runners do): still quiet, still non-zero
( _p=0; _f=0; _s=0; trap '' PIPE; piped "SIGPIPE ignored by the parent: cifar-subset | head" cifar-subset --first 2000 -q "$T/big.ds"; t_done >/dev/null ) >"$T/ign.out"
cat "$T/ign.out"; grep -q '^ok - ' "$T/ign.out" && _p=$((_p+1)) || _f=$((_f+1))

# ---- SIGTERM mid-epoch, then --resume: bit-identical ---------------------------------------
cifar-synth --count 1000 --seed 3 --pattern gradient -o "$T/sig.ds" 2>/dev/null
SIG="--batch 25 --epochs 12 --lr 0.02 --schedule cosine --augment crop-flip --normalize none --threads 2 --every 0"
net-train "$T/d8.ck" --train "$T/sig.ds" $SIG -o "$T/full.ck" 2>/dev/null
net-train "$T/d8.ck" --train "$T/sig.ds" $SIG --log "$T/term.tsv" -o "$T/term.ck" 2>"$T/term.err" &
pid=$!
i=0; while [ ! -s "$T/term.tsv" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
i=0; while [ "$(lines "$T/term.tsv")" -lt 2 ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
sleep 0.1   # into epoch 2 of 12 (an epoch is ~0.1-0.3 s here)
kill -TERM $pid 2>/dev/null
wait $pid; rc=$?
if [ "$rc" -eq 0 ]; then
  t_skip "SIGTERM" "the run finished before the signal (machine too fast?)"
else
  check "SIGTERM: exit 1" test "$rc" -eq 1
  check "SIGTERM: message names the signal and the step" grep -qE "stopped by SIGTERM at epoch [0-9]+ step [0-9]+" "$T/term.err"
  check "SIGTERM: checkpoint written and whole" net-inspect --verify "$T/term.ck"
  step=$(net-inspect --last --format tsv "$T/term.ck" | awk -F'\t' 'NR==2{print $3}')
  check "SIGTERM: stopped mid-epoch (step $step of 40 per epoch)" test "$((step % 40))" -ne 0
  expect "SIGTERM: resume" 0 net-train "$T/term.ck" --resume --train "$T/sig.ds" -o "$T/term2.ck"
  check "SIGTERM: resumed run is bit-identical to the straight one" cmp -s "$T/term2.ck" "$T/full.ck"
fi

# ---- kill -9 mid-run: the previous file is untouched and whole -----------------------------
cp "$T/d8.ck" "$T/k9.ck"
net-train "$T/d8.ck" --train "$T/sig.ds" --batch 25 --epochs 20 --threads 1 --every 1 --log "$T/k9.tsv" -o "$T/k9.ck" 2>/dev/null &
pid=$!
i=0; while [ "$(lines "$T/k9.tsv")" -lt 2 ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
check "kill -9: previous checkpoint unchanged" cmp -s "$T/d8.ck" "$T/k9.ck"
check "kill -9: previous checkpoint verifies" net-inspect --verify "$T/k9.ck"
check "kill -9: the checkpoint being written was in a temporary (left behind: PATH.tmp.PID)" \
  test -e "$T/k9.ck.tmp.$pid"
rm -f "$T/k9.ck.tmp.$pid"

# ---- hostile headers -----------------------------------------------------------------------
if ! have_pymsgpack; then
  t_skip "hostile headers" "python3-msgpack missing"
else
cat > "$T/hostile.py" <<'EOF'
# hostile.py KIND CASE OUT: a stream with one thing wrong (valid CRC and counts otherwise)
import msgpack, struct, sys, zlib
kind, case, out = sys.argv[1], sys.argv[2], sys.argv[3]
pk = lambda o: msgpack.packb(o, use_bin_type=True)
def f32(*v): return struct.pack("<%df" % len(v), *v)
def section(header, records, end, count=None):
    crc = 0
    for r in records:
        for k in ("data", "labels", "pixels"):
            if isinstance(r, dict) and k in r: crc = zlib.crc32(r[k], crc)
    n = len(records) if count is None else count
    return pk(header) + b"".join(pk(r) for r in records) + pk({"end": end, "records": n, "crc32": crc})
def tensor(name="w", shape=(2, 2), data=None, dtype="f32"):
    return {"name": name, "dtype": dtype, "shape": list(shape), "trainable": True, "role": "param",
            "data": f32(1, 2, 3, 4) if data is None else data}
def ck(ts, **over):
    h = {"kind": "checkpoint", "version": 1, "seed": 1, "epoch": 0, "step": 0, "arch": {"name": "resnet"},
         "state": {}, "tensors": len(ts), "endian": "little"}
    h.update(over)
    return section(h, ts, "checkpoint")
def chunk(n=2, labels=None, pixels=None):
    return {"n": n, "labels": bytes([0, 1][:n]) if labels is None else labels, "pixels": bytes(5 * n) if pixels is None else pixels}
def ds_ok_trailer(h, chunks):
    crc = 0
    for c in chunks: crc = zlib.crc32(c["labels"], crc); crc = zlib.crc32(c["pixels"], crc)
    return pk(h) + b"".join(pk(c) for c in chunks) + pk({"end": "dataset", "records": sum(c["n"] for c in chunks), "crc32": crc})
DSH = {"kind": "dataset", "version": 1, "shape": [1, 1, 5], "classes": ["a", "b"], "count": 2, "chunk": 2, "source": "x"}
def dsh(**over):
    h = dict(DSH); h.update(over); return h
C = {
  # checkpoints
  "ck-overflow": lambda: ck([tensor(shape=(1 << 40, 1 << 40, 1 << 40))]),
  "ck-dim-huge": lambda: ck([tensor(shape=(1 << 62,))]),
  "ck-dim-negative": lambda: ck([tensor(shape=(-1, 4))]),
  "ck-tensors-negative": lambda: ck([tensor()], tensors=-1),
  "ck-tensors-huge": lambda: ck([tensor()], tensors=1 << 31),
  "ck-short-data": lambda: ck([tensor(shape=(1000, 1000))]),
  "ck-long-data": lambda: ck([tensor(shape=(1,))]),
  "ck-duplicate-name": lambda: ck([tensor("w"), tensor("w")]),
  "ck-duplicate-key": lambda: b"\x82" + pk("kind") + pk("checkpoint") + pk("kind") + pk("checkpoint"),
  "ck-map-2^32": lambda: b"\xdf\xff\xff\xff\xff",
  "ck-array-2^32": lambda: b"\x81" + pk("kind") + b"\xdd\xff\xff\xff\xff",
  "ck-bin-claims-4g": lambda: pk({"kind": "checkpoint", "version": 1, "seed": 1, "epoch": 0, "step": 0, "arch": {},
                                  "state": {}, "tensors": 1, "endian": "little"}) + b"\x86" + pk("data") + b"\xc6\xff\xff\xff\xff" + b"\0" * 100,
  "ck-bad-dtype": lambda: ck([tensor(dtype="f16")]),
  "ck-nan": lambda: ck([tensor(data=f32(1, float("nan"), 3, 4))]),
  "ck-inf": lambda: ck([tensor(data=f32(1, 2, float("inf"), 4))]),
  "ck-version-99": lambda: ck([tensor()], version=99),
  # datasets
  "ds-count-negative": lambda: ds_ok_trailer(dsh(count=-5), [chunk()]),
  "ds-count-huge": lambda: ds_ok_trailer(dsh(count=16000000, shape=[3, 32, 32]), [chunk(pixels=bytes(2 * 3072))]),
  "ds-shape-huge": lambda: ds_ok_trailer(dsh(shape=[4096, 4096, 4096]), [chunk()]),
  "ds-shape-zero": lambda: ds_ok_trailer(dsh(shape=[0, 1, 5]), [chunk()]),
  "ds-short-pixels": lambda: ds_ok_trailer(dsh(), [chunk(pixels=bytes(7))]),
  "ds-n-vs-labels": lambda: ds_ok_trailer(dsh(), [chunk(n=2, labels=b"\0")]),
  "ds-label-range": lambda: ds_ok_trailer(dsh(), [chunk(labels=b"\0\7")]),
  "ds-classes-300": lambda: ds_ok_trailer(dsh(classes=["c%d" % i for i in range(300)]), [chunk()]),
  "ds-n-huge": lambda: ds_ok_trailer(dsh(), [chunk(n=1 << 40, labels=b"\0\1", pixels=bytes(10))]),
  "ds-duplicate-key": lambda: b"\x82" + pk("kind") + pk("dataset") + pk("kind") + pk("dataset"),
  "ds-map-2^32": lambda: b"\xdf\xff\xff\xff\xff",
}
open(out, "wb").write(C[case]())
EOF
  # hostile KIND CASE PATTERN TOOL...: the tool must exit 1 naming PATTERN, within 1 GB of address
  # space (a large allocation would fail and say "out of memory" instead). Not under the
  # sanitizers: their shadow memory needs terabytes of address space.
  if [ -n "${BN_SANITIZED:-}" ]; then VMLIMIT=":;"; else VMLIMIT="ulimit -v 1000000;"; fi
  hostile() {
    _k=$1; _c=$2; _pat=$3; shift 3
    "$PY" "$T/hostile.py" "$_k" "$_c" "$T/$_c" || { t_fail "hostile $_c" "could not make it"; return; }
    for _tool in "$@"; do
      case $_tool in
        net-train) set -- net-train "$T/$_c" --train "$T/syn.ds" --epochs 1 --threads 1 -o "$T/h.out";;
        net-eval) set -- net-eval "$T/$_c" "$T/syn.ds";;
        net-freeze) set -- net-freeze --train bn "$T/$_c" -o "$T/h.out";;
        net-train-data) set -- net-train "$T/d8.ck" --train "$T/$_c" --epochs 1 --threads 1 -o "$T/h.out";;
        cifar-subset) set -- cifar-subset --first 1 "$T/$_c" -o "$T/h.out";;
        *) set -- "$_tool" "$T/$_c";;
      esac
      expect_err "hostile $_c: $_tool refuses it naming /$_pat/" 1 "$_pat" sh -c "$VMLIMIT"' exec "$@"' sh "$@"
    done
    check "hostile $_c: no output file" test ! -e "$T/h.out"
  }
  hostile ck ck-overflow 'tensor w: shape overflows' net-inspect net-train net-eval net-freeze
  hostile ck ck-dim-huge 'tensor w: shape\[0\] is not a size' net-inspect net-freeze
  hostile ck ck-dim-negative 'tensor w: shape\[0\] is not a size' net-inspect net-freeze
  hostile ck ck-tensors-negative 'field "tensors" = -1 is out of range' net-inspect net-train net-freeze
  hostile ck ck-tensors-huge 'field "tensors" = 2147483648 is out of range' net-inspect net-freeze
  hostile ck ck-short-data 'tensor w: data holds 16 bytes, shape and dtype need 4000000' net-inspect net-train net-eval net-freeze
  hostile ck ck-long-data 'tensor w: data holds 16 bytes, shape and dtype need 4' net-inspect
  hostile ck ck-duplicate-name 'tensor w: duplicate tensor name' net-inspect net-train net-eval net-freeze
  hostile ck ck-duplicate-key 'map has the key "kind" twice' net-inspect net-freeze
  hostile ck ck-map-2^32 'declares 4294967295 entries' net-inspect net-train net-eval net-freeze
  hostile ck ck-array-2^32 'declares 4294967295 entries' net-inspect net-freeze
  hostile ck ck-bin-claims-4g 'truncated' net-inspect net-freeze
  hostile ck ck-bad-dtype 'unknown dtype "f16"' net-inspect net-freeze
  hostile ck ck-version-99 'version 99 is newer' net-inspect net-freeze
  # NaN/Inf weights: a valid stream; net-inspect reports them, net-eval refuses, net-freeze warns
  "$PY" "$T/hostile.py" ck ck-nan "$T/ck-nan"; "$PY" "$T/hostile.py" ck ck-inf "$T/ck-inf"
  expect "NaN weights: net-inspect --verify passes (the stream is sound)" 0 net-inspect --verify "$T/ck-nan"
  expect "NaN weights: net-inspect reports them" 0 net-inspect --format tsv "$T/ck-nan"
  check "NaN weights: net-inspect counts 1 NaN in w" awk -F'\t' '$4=="w" && $14==1 && $15==0 {ok=1} END {exit !ok}' "$T/out"
  expect "Inf weights: net-inspect reports them" 0 net-inspect --format tsv "$T/ck-inf"
  check "Inf weights: net-inspect counts 1 Inf in w" awk -F'\t' '$4=="w" && $14==0 && $15==1 {ok=1} END {exit !ok}' "$T/out"
  net-init --depth 8 --width 4 -o "$T/real.ck" 2>/dev/null
  "$PY" - "$T/real.ck" "$T/real-nan.ck" <<'EOF'
import msgpack, struct, sys, zlib
objs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, strict_map_key=False))
t = objs[1]; d = bytearray(t["data"]); d[0:4] = struct.pack("<f", float("nan")); t["data"] = bytes(d)
crc = 0
for o in objs[1:-1]: crc = zlib.crc32(o["data"], crc)
objs[-1]["crc32"] = crc
open(sys.argv[2], "wb").write(b"".join(msgpack.packb(o, use_bin_type=True) for o in objs))
EOF
  expect_err "NaN weights: net-eval refuses naming the tensor" 1 "tensor stem.conv.w holds 1 NaN and 0 Inf" net-eval "$T/real-nan.ck" "$T/syn.ds"
  expect_err "NaN weights: net-freeze warns naming the tensor" 0 "warning: .*tensor stem.conv.w holds 1 NaN" net-freeze --train bn "$T/real-nan.ck" -o "$T/fr.ck"
  expect_err "NaN weights: net-train refuses up front naming the tensor" 1 "tensor stem.conv.w holds 1 NaN and 0 infinite values: refusing" net-train "$T/real-nan.ck" --train "$T/syn.ds" --epochs 1 --threads 1 -o "$T/nt.ck"
  check "NaN weights: net-train leaves no output" test ! -e "$T/nt.ck"

  hostile ds ds-count-negative 'field "count" = -5 is out of range' net-inspect cifar-subset net-train-data
  hostile ds ds-count-huge 'header says 16000000 records but the stream holds 2' net-inspect cifar-subset net-train-data
  hostile ds ds-shape-huge 'field "shape": images larger than 64 MiB' net-inspect cifar-subset net-train-data
  hostile ds ds-shape-zero 'field "shape" must hold integers in \[1, 4096\]' net-inspect cifar-subset
  hostile ds ds-short-pixels 'chunk of 2 records has 7 pixel bytes, expected 10' net-inspect cifar-subset net-train-data
  hostile ds ds-n-vs-labels 'chunk of 2 records has 1 labels' net-inspect cifar-subset
  hostile ds ds-label-range 'record 1: label 7 is not below the 2 classes' net-inspect cifar-subset net-train-data
  hostile ds ds-classes-300 'field "classes" must be an array of 1 to 256 names' net-inspect cifar-subset
  hostile ds ds-n-huge 'field "n" = 1099511627776 is out of range' net-inspect cifar-subset
  hostile ds ds-duplicate-key 'map has the key "kind" twice' net-inspect cifar-subset
  hostile ds ds-map-2^32 'declares 4294967295 entries' net-inspect cifar-subset net-train-data
fi

# ---- divergence --------------------------------------------------------------------------------
# lr 1e30 from a good checkpoint, written over it: NaN at the first step, the good file stays
cp "$T/d8.ck" "$T/good.ck"
expect_err "divergence: lr 1e30 stops in epoch 1 naming the step" 1 "loss is NaN at epoch 1 step [0-9]+; 0 earlier" \
  net-train "$T/good.ck" --train "$T/syn.ds" --epochs 2 --batch 50 --lr 1e30 --momentum 0 --schedule constant --threads 1 -o "$T/good.ck"
check "divergence: the last good checkpoint is left as it was" cmp -s "$T/d8.ck" "$T/good.ck"
check "divergence: no temporary left" no_temp "$T"
# lr 1e6: the loss stays finite (huge) for an epoch, then NaN: the epochs before are committed
expect_err "divergence: lr 1e6 stops naming the step" 1 "(loss is NaN|the run diverged: weights not finite) at epoch [0-9]+ step [0-9]+; [0-9]+ earlier checkpoints? written" \
  net-train "$T/d8.ck" --train "$T/syn.ds" --epochs 3 --batch 50 --lr 1e6 --momentum 0 --schedule constant --threads 1 -o "$T/div.ck"
check "divergence: the checkpoints written before (if any) verify" sh -c "[ ! -e '$T/div.ck' ] || net-inspect --verify '$T/div.ck'"
# good for an epoch, then the rate jumps x1e6
expect_err "divergence in a later epoch: stops naming the step" 1 "(loss is NaN|the run diverged: weights not finite) at epoch [2-9] step [0-9]+; [1-9] earlier checkpoints? written" \
  net-train "$T/d8.ck" --train "$T/syn.ds" --epochs 4 --batch 50 --lr 1 --momentum 0 --schedule step --milestones 1 --gamma 1e6 \
  --threads 1 -o "$T/div2.ck"
check "divergence in a later epoch: the checkpoints written before verify" net-inspect --verify "$T/div2.ck"
check "divergence in a later epoch: the first (epoch 1, before the jump) is finite" \
  sh -c "net-inspect --pick 0 --format tsv '$T/div2.ck' | awk -F'\t' 'NR>1 && (\$14>0 || \$15>0) {bad=1} END {exit bad}'"
# Every committed checkpoint holds finite tensors: net-train checks the weights and BN
# statistics before writing, not only the loss (a huge but finite loss can come with Inf weights).
nonfinite=$( [ -e "$T/div.ck" ] && net-inspect --format tsv "$T/div.ck" | awk -F'\t' 'NR>1 && ($14>0 || $15>0) {n++} END {print n+0}' || echo 0)
[ "$nonfinite" -eq 0 ] && t_ok "divergence: every committed checkpoint is finite" ||
  t_fail "divergence: every committed checkpoint is finite" "$nonfinite tensors with NaN/Inf committed"
expect_err "divergence: weights that overflow before the loss is NaN are named" 1 "holds [0-9]+ NaN and [0-9]+ infinite values after step" \
  net-train "$T/d8.ck" --train "$T/syn.ds" --epochs 2 --batch 50 --lr 1e6 --momentum 0 --schedule constant --threads 1 -o "$T/div3.ck"
t_done
