#!/bin/sh
# cli_sim.sh: the tools' CUDA path from the command line, where there is no GPU: the tools
# built against tests/cudasim (make sim: build/sim/bin), which runs kernels/ and the cuDNN
# calls on the CPU. It checks what the real build can only check on a GPU:
#   - --device cuda with no device (CUDASIM_DEVICES=0): the message and exit 1; --device
#     auto then falls back to the CPU, and takes the (emulated) GPU when there is one
#   - net-train --device cuda against --device ref from the same checkpoint (all parameters,
#     BN only with the frozen tensors bit-identical, Adam, crop-flip augmentation), the same
#     seed twice giving the same bytes, a run moved between devices by --resume
#   - the same bytes when the emulation runs blocks and threads last first (CUDASIM_ORDER),
#     and test_cuda_ops passing in that order too (races)
#   - the per-element kernels' float4 variant taken, and split launches (BN_CUDA_INDEX_LIMIT)
#     giving the same bytes
#   - net-eval --device cuda against --device cpu; --precision tf32 reaching cuDNN
# The emulation sums each convolution in double and rounds once, so this checks the
# backend's logic (indices, fusions, batches, optimizer, recording, state), not the GPU's own
# rounding (docs/gpu.md, "cudasim"). Against ref, which also sums in double: the CPU backend
# sums the filter gradient in float, and the stem's (3 channels x 32 x 32 x batch, of a dy
# that BatchNorm makes zero-mean) cancels so much that its float error reaches 0.2-5% of
# the update within two epochs (measured here; ref against cuda: under 1e-5).
. "$(dirname "$0")/lib.sh"
b=${BN_BUILD:-build}
case "$b" in /*) ;; *) b="$TOP/$b" ;; esac
SIM="$b/sim/bin"
for p in net-train net-eval net-init net-freeze cifar-synth; do
  [ -x "$SIM/$p" ] || { t_skip "all" "$SIM/$p not built (make sim; the sanitizer build has none)"; t_done; exit; }
done
have_pymsgpack || { t_skip "all" "python3 msgpack missing (python3-msgpack)"; t_done; exit; }
PATH="$SIM:$PATH"
export OMP_NUM_THREADS=1   # the emulation's convolutions and the CPU backend: one thread each

cifar-synth --count 200 --seed 7 -o "$T/syn.ds" 2>/dev/null
cifar-synth --count 100 --seed 8 -o "$T/test.ds" 2>/dev/null
net-init --depth 8 --width 4 --seed 5 -o "$T/all.ck" 2>/dev/null
net-freeze --train bn "$T/all.ck" -o "$T/bn.ck" 2>/dev/null
RUN="--train $T/syn.ds --batch 64 --lr 0.05 --momentum 0.9 --threads 1"

# ---- which device ------------------------------------------------------------------------
CUDASIM_DEVICES=0 expect_err "no device: --device cuda refuses" 1 "device cuda: no (usable )?CUDA device" \
  net-train "$T/all.ck" $RUN --epochs 1 --device cuda -o "$T/x.ck"
check "no device: nothing written" test ! -e "$T/x.ck"
CUDASIM_DEVICES=0 expect "no device: --device auto trains on the cpu" 0 \
  net-train "$T/all.ck" $RUN --epochs 1 --device auto -o "$T/x.ck"
check "no device: auto did not take the cuda backend" sh -c "! grep -q 'cuda backend' '$T/err'"
expect "device: --device auto takes the (emulated) GPU" 0 net-train "$T/all.ck" $RUN --epochs 1 --device auto -o "$T/x.ck"
check "device: auto took the cuda backend" grep -q "cuda backend" "$T/err"
CUDASIM_DEVICES=0 expect_err "no device: net-eval --device cuda refuses" 1 "no (usable )?CUDA device" \
  net-eval --device cuda "$T/all.ck" "$T/test.ds"

# ---- cuda against ref ----------------------------------------------------------------------
# Tolerance (ckclose, of how far training moved each tensor): 1e-4. Both runs see the same
# images, both sum convolutions in double; they part by the float rounding of BatchNorm's
# and the elementwise ops' different orders: measured 1e-6 to 9e-6 of the update after 2
# epochs (6 steps) on these random images. An index, fusion, masking or optimizer mistake
# is of the order of the update itself.
export CK_TOL=1e-4
for dev in cuda ref; do
  net-train "$T/all.ck" $RUN --epochs 2 --every 1 --device $dev -o "$T/all-$dev.ck" 2>"$T/all-$dev.err" ||
    t_fail "all: train on $dev" "$(tail -c 300 "$T/all-$dev.err")"
done
check "all: the cuda run used the cuda backend, recording its steps" grep -q "cuda backend.*replayed" "$T/all-cuda.err"
ckclose "all: cuda = ref after 2 epochs" "$T/all-ref.ck" "$T/all-cuda.ck" "$T/all.ck"
net-train "$T/all.ck" $RUN --epochs 2 --every 1 --device cuda -o "$T/all-cuda2.ck" 2>/dev/null
check "all: the same seed on cuda gives the same bytes" cmp -s "$T/all-cuda.ck" "$T/all-cuda2.ck"
# A GPU runs blocks and threads in no fixed order; the backend's sums are ordered by index,
# never by timing, so the last-first schedule must give the same bytes (a race would not).
CUDASIM_ORDER=reverse net-train "$T/all.ck" $RUN --epochs 2 --every 1 --device cuda -o "$T/all-cuda-rev.ck" 2>/dev/null
check "all: blocks and threads run last first give the same bytes" cmp -s "$T/all-cuda.ck" "$T/all-cuda-rev.ck"

# BN_CUDA_CONV=own: the 3x3 stride-1 convolutions by kernels/cuda_conv3.cu, which sums in
# float (by one thread, in a fixed order; the filter gradient's block partials in double), not
# in double as the emulated cuDNN: the same tolerance, and the same bytes in either order
BN_CUDA_VERBOSE=1 BN_CUDA_CONV=own net-train "$T/all.ck" $RUN --epochs 2 --every 1 --device cuda \
  -o "$T/all-own.ck" 2>"$T/all-own.err" || t_fail "own: train on cuda" "$(tail -c 300 "$T/all-own.err")"
check "own: the 3x3 stride-1 convolutions went to cuda_conv3.cu, in all three directions" sh -c \
  "for d in fwd bwd_data bwd_filter; do grep -q \"s1 p1 \$d: cuda_conv3.cu's kernel\" '$T/all-own.err' || exit 1; done"
check "own: the other shapes still went to cuDNN" grep -q "^cuda: conv.* s2 .*algo" "$T/all-own.err"
ckclose "own: cuda with its own convolutions = ref after 2 epochs" "$T/all-ref.ck" "$T/all-own.ck" "$T/all.ck"
check "own: not the bytes of cuDNN's run (its sums are in float)" sh -c "! cmp -s '$T/all-cuda.ck' '$T/all-own.ck'"
BN_CUDA_CONV=own CUDASIM_ORDER=reverse net-train "$T/all.ck" $RUN --epochs 2 --every 1 --device cuda \
  -o "$T/all-own-rev.ck" 2>/dev/null
check "own: blocks and threads run last first give the same bytes" cmp -s "$T/all-own.ck" "$T/all-own-rev.ck"
BN_CUDA_CONV=own BN_CUDA_CONV3_ROWS=3 expect_err "own: BN_CUDA_CONV3_ROWS takes 2 or 4" 1 \
  "BN_CUDA_CONV3_ROWS=3: expected 2 or 4" net-train "$T/all.ck" $RUN --epochs 1 --device cuda -o "$T/x.ck"
BN_CUDA_CONV=own BN_CUDA_CONV3_ROWS=4 net-train "$T/all.ck" $RUN --epochs 2 --every 1 --device cuda \
  -o "$T/all-own2.ck" 2>/dev/null
check "own: 4 rows a thread everywhere give the same bytes as the shapes' choice (2 at this width)" cmp -s "$T/all-own.ck" "$T/all-own2.ck"
# bench_conv (the GPU's per-convolution benchmark) runs, here at batch 2: every row, own
# figures for the 3x3 stride-1 shapes only, the step's totals; bad arguments refused
BC="$b/sim/tests/bench_conv"
if [ -x "$BC" ]; then
  expect "bench_conv: runs under the emulation" 0 "$BC" --batch 2 --reps 1
  check "bench_conv: 24 rows, the 12 of 3x3 stride-1 shapes with own figures" sh -c \
    "[ \$(grep -c -E '^[0-9]+->[0-9]+ ' '$T/out') -eq 24 ] &&
     [ \$(grep -E '^[0-9]+->[0-9]+ [0-9x]+ k3 s1 ' '$T/out' | awk '\$8 != \"-\"' | wc -l) -eq 12 ] &&
     [ \$(grep -E '^[0-9]+->[0-9]+ [0-9x]+ k[13] s2 ' '$T/out' | awk '\$8 == \"-\"' | wc -l) -eq 12 ]"
  check "bench_conv: the step's totals" sh -c "[ \$(grep -c '^step convolutions' '$T/out') -eq 2 ]"
  expect_err "bench_conv: a bad --reps is refused" 2 "bench_conv: --reps: 0 is out of range" "$BC" --reps 0
else
  t_skip "bench_conv" "$BC not built (make sim)"
fi
BN_CUDA_CONV=winograd expect_err "own: BN_CUDA_CONV takes cudnn or own" 1 "BN_CUDA_CONV=winograd: expected cudnn" \
  net-train "$T/all.ck" $RUN --epochs 1 --device cuda -o "$T/x.ck"

# a run moved between devices: epoch 1 on one, epoch 2 resumed on the other
expect "move: epoch 2 resumed on ref from cuda's epoch 1" 0 \
  net-train "$T/all-cuda.ck" --pick 0 --resume $RUN --device ref -o "$T/c2r.ck"
ckclose "move: cuda then ref = ref throughout" "$T/all-ref.ck" "$T/c2r.ck" "$T/all.ck"
expect "move: epoch 2 resumed on cuda from ref's epoch 1" 0 \
  net-train "$T/all-ref.ck" --pick 0 --resume $RUN --device cuda -o "$T/r2c.ck"
ckclose "move: ref then cuda = ref throughout" "$T/all-ref.ck" "$T/r2c.ck" "$T/all.ck"
expect "move: epoch 2 resumed on cpu from cuda's epoch 1" 0 \
  net-train "$T/all-cuda.ck" --pick 0 --resume $RUN --device cpu -o "$T/c2p.ck"
CK_TOL=0.1 ckclose "move: cuda then cpu near ref throughout (the cpu's float filter gradient)" \
  "$T/all-ref.ck" "$T/c2p.ck" "$T/all.ck"

# BN only: cuda = ref, and every frozen tensor keeps its bits
for dev in cuda ref; do
  net-train "$T/bn.ck" $RUN --epochs 2 --device $dev -o "$T/bn-$dev.ck" 2>"$T/bn-$dev.err" ||
    t_fail "bn: train on $dev" "$(tail -c 300 "$T/bn-$dev.err")"
done
ckclose "bn: cuda = ref after 2 epochs" "$T/bn-ref.ck" "$T/bn-cuda.ck" "$T/bn.ck"
if "$PY" - "$T/bn.ck" "$T/bn-cuda.ck" >"$T/frozen" 2>&1 <<'EOF'
import msgpack, sys
def tensors(path):
    out = {}
    for o in msgpack.Unpacker(open(path, "rb"), raw=False, strict_map_key=False):
        if isinstance(o, dict) and o.get("kind") == "checkpoint": out = {}
        elif isinstance(o, dict) and "data" in o and "name" in o: out[o["name"]] = o
    return out
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
frozen = [n for n, t in a.items() if t["role"] == "param" and not t["trainable"]]
moved = [n for n, t in a.items() if t["role"] == "param" and t["trainable"] and t["data"] != b[n]["data"]]
changed = [n for n in frozen if a[n]["data"] != b[n]["data"]]
if not frozen or not moved: sys.exit("%d frozen, %d trained tensors moved: not a BN-only run" % (len(frozen), len(moved)))
if changed: sys.exit("frozen tensors changed: " + ", ".join(changed[:5]))
print("%d frozen tensors bit-identical, %d BN tensors trained" % (len(frozen), len(moved)))
EOF
then t_ok "bn: frozen weights bit-identical on cuda ($(cat "$T/frozen"))"; else t_fail "bn: frozen weights on cuda" "$(cat "$T/frozen")"; fi

# Adam, and the crop-flip augmentation built on the device
for dev in cuda ref; do
  net-train "$T/all.ck" $RUN --epochs 1 --optimizer adam --lr 0.001 --augment crop-flip --device $dev \
    -o "$T/adam-$dev.ck" 2>"$T/adam-$dev.err" || t_fail "adam: train on $dev" "$(tail -c 300 "$T/adam-$dev.err")"
done
check "adam: batches built on the device" grep -q "batches built there" "$T/adam-cuda.err"
ckclose "adam + crop-flip: cuda = ref" "$T/adam-ref.ck" "$T/adam-cuda.ck" "$T/all.ck"

# ---- the per-element kernels' launches -------------------------------------------------------
# BatchNorm's apply, inference, dx and partial sums take a float4 a thread on these tensors
# (hw 1024, 256, 64; aligned): the emulation's launch tally names the variant that ran. Split into launches
# of a few images each (BN_CUDA_INDEX_LIMIT; 2^31 - 1 values by default), the same bytes.
CUDASIM_LAUNCHES=1 net-train "$T/bn.ck" $RUN --epochs 2 --device cuda -o "$T/bn-launch.ck" 2>"$T/launch.err"
check "launches: BatchNorm ran as float4 kernels" sh -c \
  "grep -q 'launches k_bn_apply<4>' '$T/launch.err' && grep -q 'launches k_bn_bwd_dx<4>' '$T/launch.err' &&
   grep -q 'launches k_bn_partial4<MODE>' '$T/launch.err' && ! grep -q 'launches k_bn_apply<1>' '$T/launch.err' &&
   ! grep -q 'launches k_bn_partial<MODE>' '$T/launch.err'"
apply_launches() { sed -n 's/^cudasim: launches k_bn_apply<4> //p' "$1"; }
BN_CUDA_INDEX_LIMIT=9000 CUDASIM_LAUNCHES=1 net-train "$T/bn.ck" $RUN --epochs 2 --device cuda \
  -o "$T/bn-split.ck" 2>"$T/split.err"
check "launches: split into launches of 2 images, the same bytes" cmp -s "$T/bn-cuda.ck" "$T/bn-split.ck"
check "launches: the split made more launches ($(apply_launches "$T/launch.err") unsplit, $(apply_launches "$T/split.err") split)" \
  test "$(apply_launches "$T/split.err")" -gt "$(apply_launches "$T/launch.err")"
BN_CUDA_INDEX_LIMIT=1000 expect_err "launches: an image over the limit is refused" 1 \
  "bn_fwd_train: an image of 4096 values is over the 1000 one kernel launch can index" \
  net-train "$T/bn.ck" $RUN --epochs 1 --device cuda -o "$T/x.ck"
BN_CUDA_INDEX_LIMIT=lots expect_err "launches: a limit that is not a number is refused" 1 \
  "BN_CUDA_INDEX_LIMIT: 'lots' is not a whole number" net-train "$T/bn.ck" $RUN --epochs 1 --device cuda -o "$T/x.ck"

# ---- net-eval ------------------------------------------------------------------------------
# The same checkpoint on both devices: every count, accuracy and confusion cell equal (a
# wrong BN mode or normalisation would move many predictions), the losses within 1e-4.
for dev in cuda cpu; do
  net-eval --device $dev -f tsv "$T/all-cuda.ck" "$T/test.ds" >"$T/eval-$dev.tsv" 2>"$T/eval-$dev.err" ||
    t_fail "eval on $dev" "$(tail -c 300 "$T/eval-$dev.err")"
done
if "$PY" - "$T/eval-cpu.tsv" "$T/eval-cuda.tsv" >"$T/ev" 2>&1 <<'EOF'
import sys
a, b = [dict(l.rstrip("\n").split("\t", 1) for l in open(p) if "\t" in l) for p in sys.argv[1:3]]
if sorted(a) != sorted(b) or "loss" not in a: sys.exit("different keys: %s vs %s" % (sorted(a), sorted(b)))
for k in a:
    if k == "loss":
        if abs(float(a[k]) - float(b[k])) > 1e-4 * max(1.0, abs(float(a[k]))): sys.exit("loss %s vs %s" % (a[k], b[k]))
    elif a[k] != b[k]: sys.exit("%s: %s vs %s" % (k, a[k], b[k]))
print("%s images, %s correct, loss %s vs %s" % (a["images"], a["correct"], a["loss"], b["loss"]))
EOF
then t_ok "eval: cuda = cpu ($(cat "$T/ev"))"; else t_fail "eval: cuda = cpu" "$(cat "$T/ev")"; fi

# ---- the op tests under the other schedule ---------------------------------------------------
# test_cuda_ops (run by tests/run.sh in thread order) again with blocks and threads last
# first: a kernel whose result depends on the order (a race) fails one of the two
TCO="$b/sim/tests/test_cuda_ops"
if [ -x "$TCO" ]; then
  CUDASIM_ORDER=reverse "$TCO" >"$T/rev.log" 2>&1; rc=$?
  tally=$(grep -E '^# [0-9]+ passed' "$T/rev.log" | tail -n 1)
  if [ "$rc" -eq 0 ] && [ -n "$tally" ]; then t_ok "test_cuda_ops last thread first (${tally#\# })"
  else t_fail "test_cuda_ops last thread first" "exit $rc: $(grep -E 'FAIL|check failed|^cudasim:' "$T/rev.log" | head -n 5)"; fi
else
  t_skip "test_cuda_ops last thread first" "$TCO not built"
fi

# ---- precision -----------------------------------------------------------------------------
# tf32 must reach cuDNN's math type: the emulation then rounds the convolutions' operands to
# TF32 (10 mantissa bits, as the tensor cores read them), so the parameters part from
# fp32's; the run must still be a sane one near it. TF32's rounding is ~5e-4 of each operand,
# far above fp32's, and BatchNorm's gradients amplify it in the tensors that move least:
# measured 0.2 of the update (an early BN gamma) after one epoch, hence 0.5.
expect "tf32: trains on cuda" 0 net-train "$T/all.ck" $RUN --epochs 1 --precision tf32 --device cuda -o "$T/tf32.ck"
net-train "$T/all.ck" $RUN --epochs 1 --device cuda -o "$T/fp32.ck" 2>/dev/null
CK_TOL=0.5 ckclose "tf32: near fp32" "$T/fp32.ck" "$T/tf32.ck" "$T/all.ck"
check "tf32: its parameters are not fp32's" sh -c "! grep -q 'all equal' '$T/cmp'"

# ---- cuDNN: algorithms by timing, its failures ---------------------------------------------
# Heuristics choose by default (timing may choose otherwise in another process: other bits);
# BN_CUDNN_FIND=1 times them. The emulation lists the same candidates in the same order either
# way, so the two choose alike: the same bytes.
BN_CUDA_VERBOSE=1 BN_CUDNN_FIND=1 net-train "$T/all.ck" $RUN --epochs 1 --device cuda -o "$T/find.ck" 2>"$T/find.err"
check "cudnn: BN_CUDNN_FIND=1 chose by timing" grep -q "algorithms by timing" "$T/find.err"
check "cudnn: timed choices, the same bytes as the heuristics'" cmp -s "$T/fp32.ck" "$T/find.ck"
# the emulation lists a non-deterministic candidate first, then a tensor-op one: in fp32 the
# choices (BN_CUDA_VERBOSE's lines) are deterministic FMA ones; in tf32 tensor-op ones
BN_CUDA_VERBOSE=1 net-train "$T/all.ck" $RUN --epochs 1 --device cuda -o "$T/x.ck" 2>"$T/heur.err"
BN_CUDA_VERBOSE=1 net-train "$T/all.ck" $RUN --epochs 1 --device cuda --precision tf32 -o "$T/x.ck" 2>"$T/tf32v.err"
check "cudnn: heuristics by default, nothing timed" sh -c "grep -q 'algorithms by heuristics' '$T/heur.err' &&
  grep -q '^cuda: conv' '$T/heur.err' && ! grep '^cuda: conv' '$T/heur.err' | grep -q ' ms'"
check "cudnn: BN_CUDNN_FIND=1: the choices timed" sh -c "grep '^cuda: conv' '$T/find.err' | grep -q ', [0-9.]* ms'"
for f in find heur; do
  check "cudnn: $f: every choice deterministic and under FMA math ($(grep -c '^cuda: conv' "$T/$f.err") choices)" sh -c \
    "grep -q '^cuda: conv' '$T/$f.err' && ! grep '^cuda: conv' '$T/$f.err' | grep -v 'timed under fma math' | grep -q . &&
     ! grep -q 'non-deterministic' '$T/$f.err'"
done
check "cudnn: tf32: tensor-op algorithms chosen, none non-deterministic" sh -c \
  "grep -q '^cuda: conv.*timed under tensor-op math' '$T/tf32v.err' && ! grep -q 'non-deterministic' '$T/tf32v.err'"
# cuDNN 9 says "not supported" and "out of memory" in finer codes (3002: the shape, 4004:
# device memory for its trials): the heuristics then; another failure (5000) ends the run
for st in 3002 4004; do
  BN_CUDA_VERBOSE=1 BN_CUDNN_FIND=1 CUDASIM_FIND_STATUS=$st net-train "$T/all.ck" $RUN --epochs 1 --device cuda \
    -o "$T/find$st.ck" 2>"$T/find$st.err"
  check "cudnn: cudnnFind failing with $st falls back to the heuristics, saying why" grep -q \
    "cudnnFind gave CUDNN_STATUS_.*: cudasim: cudnnFind fails as CUDASIM_FIND_STATUS=$st asks: heuristics order" "$T/find$st.err"
done
rm -f "$T/x.ck"
BN_CUDNN_FIND=1 CUDASIM_FIND_STATUS=5000 expect_err "cudnn: cudnnFind failing otherwise ends the run, with cuDNN's text" 1 \
  "cuDNN error at kernels/cuda_conv.cu:[0-9]+: CUDNN_STATUS_EXECUTION_FAILED \\(cudnnFindConvolutionForwardAlgorithm\\); cuDNN's last message: cudasim: cudnnFind fails as CUDASIM_FIND_STATUS=5000 asks" \
  net-train "$T/all.ck" $RUN --epochs 1 --device cuda -o "$T/x.ck"
check "cudnn: nothing written" test ! -e "$T/x.ck"
BN_CUDNN_FIND=1 CUDASIM_FIND_STATUS=3007 expect_err "cudnn: cudnnFind refusing the machine (3007: the architecture) ends the run" 1 \
  "cuDNN error at kernels/cuda_conv.cu:[0-9]+: CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH \\(cudnnFindConvolutionForwardAlgorithm\\)" \
  net-train "$T/all.ck" $RUN --epochs 1 --device cuda -o "$T/x.ck"
# a sub-library of cuDNN 9 missing: found at start-up, a reason; auto takes the CPU
CUDASIM_CUDNN_SUBLIB=missing expect_err "cudnn: a missing sub-library refuses --device cuda, saying why" 1 \
  "cuDNN [0-9]+'s sub-libraries could not be loaded \(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED: cudasim: libcudnn_cnn" \
  net-train "$T/all.ck" $RUN --epochs 1 --device cuda -o "$T/x.ck"
CUDASIM_CUDNN_SUBLIB=missing expect "cudnn: a missing sub-library: --device auto trains on the cpu" 0 \
  net-train "$T/all.ck" $RUN --epochs 1 --device auto -o "$T/x.ck"
check "cudnn: auto did not take the cuda backend" sh -c "! grep -q 'cuda backend' '$T/err'"

t_done
