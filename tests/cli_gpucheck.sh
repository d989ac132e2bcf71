#!/bin/sh
# kernels/gpu-check.sh, the script a session with a GPU runs on the device machine, rehearsed
# here without one: a pack of this build's programs (the CUDA tests skip, --device cuda is
# refused) with small synthetic data, so that what its one call depends on is checked before
# device time is spent: the parts run in order under the deadline, a part that cannot finish
# in time is stopped or skipped and named, a skip, a timeout or a failure is not a pass, the
# bench's failures show their messages, the PyTorch peer is found in the pack (../shared does
# not travel), memcheck's result or absence is reported, and at most the 8 files the device
# tool brings back are left in $OUT, written as each part ends. Also tests/bench.sh's peer
# handling (no figure, no python), which the GPU bench relies on.
. "$(dirname "$0")/lib.sh"
CK=$TOP/kernels/gpu-check.sh
B=${BN_BUILD:-$TOP/build}
case "$B" in /*) ;; *) B=$TOP/$B ;; esac     # the pack's links must work from anywhere (BN_BUILD=build-asan)
case "$BIN" in /*) ;; *) BIN=$TOP/$BIN ;; esac
if [ ! -x "$B/tests/test_cuda_ops" ] || [ ! -x "$B/tests/test_cuda_train" ]; then
  t_skip gpucheck "no CUDA test programs in $B/tests (the CUDA path was not built)"; t_done; exit
fi
if nvidia-smi -L >/dev/null 2>&1; then
  t_skip gpucheck "a GPU is present: run kernels/gpu-check.sh itself (docs/gpu.md)"; t_done; exit
fi

P=$T/pack
mkdir -p "$P/lib" "$P/data" "$P/peers"
for f in "$B/tests/test_cuda_ops" "$B/tests/test_cuda_train" "$B/tests/bench_conv" "$BIN"/net-* "$BIN"/cifar-*; do
  ln -s "$f" "$P/"
done
cifar-synth --count 200 --seed 1 -o "$P/data/train.ds" 2>/dev/null
cifar-synth --count 64 --seed 2 -o "$P/data/test.ds" 2>/dev/null
printf 'raise SystemExit("peer stand-in")\n' >"$P/peers/torch_resnet20.py"
# a compute-sanitizer stand-in: runs the program (its first argument that is a file that
# can run) with the arguments after it, then prints SUMMARY
cat >"$T/cs.sh" <<'EOF'
#!/bin/sh
while [ $# -gt 0 ] && ! { [ -f "$1" ] && [ -x "$1" ]; }; do shift; done
"$@"; rc=$?
echo "========= $SUMMARY"
exit $rc
EOF
chmod +x "$T/cs.sh"
# small sizes: a bench of 2 steps of 16 images, a demo of 1 epoch in fp32 on the CPU
small() {
  env GPU_PACK="$P" GPU_ON_SKIP=go DEVICE=cpu DEMO_EPOCHS=1 DEMO_PRECISIONS=fp32 COMPUTE_SANITIZER="$T/cs.sh" \
    SUMMARY="ERROR SUMMARY: 0 errors" STEPS=2 BATCH=16 PEER="$T/no-peer.py" "$@"
}

expect_err "usage: an unknown part is refused" 2 "usage: gpu-check.sh" env GPU_PACK="$T/none" sh "$CK" everything
expect_err "usage: a deadline that is not a number is refused" 2 "GPU_DEADLINE: 'soon'" \
  env GPU_PACK="$P" GPU_DEADLINE=soon sh "$CK" all
expect_err "no pack: said, before anything runs" 4 "no pack at $T/none" env GPU_PACK="$T/none" sh "$CK"

O=$T/o1
small OUT="$O" sh "$CK" all >"$T/all.out" 2>&1
rc=$?
S=$O/summary.txt
check "all: no GPU here, so the tests skip: exit 3, not a pass" [ "$rc" -eq 3 ]
check "all: the skip is said" grep -q "tests skipped on a GPU machine" "$S"
check "all: each part ran, in order" sh -c "grep -o 'gpu-check: [a-z_0-9-]*: exit' '$S' | tr -d '\n' |
  grep -qx 'gpu-check: test_cuda_ops: exitgpu-check: test_cuda_train: exitgpu-check: test_cuda_train_own: exitgpu-check: bench: exitgpu-check: demo-all-1-fp32: exitgpu-check: demo-bn-1-fp32: exitgpu-check: repro-1: exitgpu-check: repro-2: exitgpu-check: memcheck: exitgpu-check: racecheck: exitgpu-check: synccheck: exitgpu-check: bench-conv: exitgpu-check: bench-own: exitgpu-check: bench-own-rows4: exitgpu-check: bench-tf32: exitgpu-check: bench-find: exitgpu-check: bench-nograph: exitgpu-check: bench-host-step: exit'"
check "all: the same seed twice gave the same checkpoint" grep -q "^repro: the same seed in two processes gave the same checkpoint" "$S"
check "all: the tests' tallies are in the summary" sh -c "grep -q '^test.log: # [0-9]* passed, 0 failed, [0-9]* skipped' '$S' &&
  grep -q '^train.log: # 0 passed, 0 failed, [0-9]* skipped' '$S'"
check "all: the bench's failure shows net-train's message" sh -c "grep -q '^bench: net-train (all) failed:' '$O/bench.log' &&
  grep -q '^net-train: --device cuda: ' '$O/bench.log'"
check "all: the peer comes from the pack when PEER's file is absent" grep -q "^peer: $P/peers/torch_resnet20.py, " "$S"
check "all: the demo's two runs give a test accuracy" sh -c "grep -c '^all, 1 epochs, fp32: test accuracy 0\.[0-9]*,' '$S' |
  grep -qx 1 && grep -c '^bn, 1 epochs, fp32: test accuracy 0\.[0-9]*,' '$S' | grep -qx 1"
check "all: memcheck ran the op tests and its summary is reported" sh -c "grep -q '^memcheck: .*ERROR SUMMARY: 0 errors' '$S' &&
  grep -q '^# [0-9]* passed, 0 failed' '$O/memcheck.log'"
check "all: the summary closes with the exit status" sh -c "tail -n 1 '$S' | grep -q '^exit 3 (all, '"
check "all: the call's output ends with the summary" sh -c "tail -n 1 '$T/all.out' | grep -q '^exit 3 (all, '"
check "all: at most 8 files left in OUT, no folders" sh -c "[ \$(find '$O' -type f | wc -l) -le 8 ] &&
  [ \$(find '$O' -mindepth 1 -type d | wc -l) -eq 0 ]"
for f in test.log test.err train.log bench.log demo.log memcheck.log logs.tar.gz; do
  check "all: $f in OUT" [ -f "$O/$f" ]
done
tar -tzf "$O/logs.tar.gz" >"$T/tar.lst" 2>&1
check "all: the archive holds the other logs, the demo's curves among them" sh -c "grep -qx demo/all-1-fp32.tsv '$T/tar.lst' &&
  grep -qx bench-tf32.log '$T/tar.lst' && grep -qx ldd.txt '$T/tar.lst' && grep -qx nvidia-smi.txt '$T/tar.lst'"
check "all: no checkpoints in the archive" sh -c "! grep -q 'ckpt' '$T/tar.lst'"

# where the tests find no usable GPU (a driver older than the runtime, say) the other parts
# would only fail the same way: the call stops there, saying why
small OUT="$T/o7" GPU_ON_SKIP=stop sh "$CK" all >"$T/stop.out" 2>&1
rc=$?
check "no usable GPU: all stops after the tests, exit 3" sh -c "[ $rc -eq 3 ] &&
  grep -o 'gpu-check: [a-z_0-9-]*: exit' '$T/o7/summary.txt' | tr -d '\n' |
  grep -qx 'gpu-check: test_cuda_ops: exitgpu-check: test_cuda_train: exitgpu-check: test_cuda_train_own: exit'"
check "no usable GPU: the reason is said" grep -q "^gpu-check: no usable GPU: skip - .*; the other parts not run" \
  "$T/o7/summary.txt"

rm "$P/peers/torch_resnet20.py"
small OUT="$T/o2" GPU_DEADLINE=15 sh "$CK" all >"$T/late.out" 2>&1
rc=$?
check "deadline: nothing fits in 15 s: exit 5, not a pass" [ "$rc" -eq 5 ]
check "deadline: every part not run is named" grep -q "^not run: test_cuda_ops test_cuda_train test_cuda_train_own bench demo-all-1-fp32 demo-bn-1-fp32 repro-1 memcheck racecheck synccheck bench-conv bench-own bench-own-rows4 bench-tf32 bench-find bench-nograph bench-host-step$" \
  "$T/o2/summary.txt"
check "deadline: nothing ran" sh -c "[ -s '$T/o2/summary.txt' ] && ! grep -q ': exit [0-9]* in ' '$T/o2/summary.txt'"

# a part that runs out of time is stopped at the deadline; what follows is skipped
Q=$T/slow
mkdir -p "$Q"
for f in "$P"/*; do ln -s "$f" "$Q/"; done
rm "$Q/test_cuda_ops"
printf '#!/bin/sh\nsleep 100\n' >"$Q/test_cuda_ops"
chmod +x "$Q/test_cuda_ops"
t0=$(date +%s)
small GPU_PACK="$Q" OUT="$T/o5" GPU_DEADLINE=31 sh "$CK" all >"$T/slow.out" 2>&1
rc=$?
t1=$(date +%s)
check "timeout: a part out of time gives exit 6 (not 124, the device tool's own)" [ "$rc" -eq 6 ]
check "timeout: stopped at its limit, said" grep -qE "^gpu-check: test_cuda_ops: exit 124 \(out of time\) in [12][0-9] s \(limit [12][0-9] s\)" \
  "$T/o5/summary.txt"
check "timeout: the call ends within the deadline" [ $((t1 - t0)) -le 34 ]
check "timeout: the parts after it are named as not run" grep -q "^not run: test_cuda_train test_cuda_train_own bench " "$T/o5/summary.txt"

small OUT="$T/o3" sh "$CK" bench >"$T/bench.out" 2>&1
check "bench alone: a pack without the peer is said" grep -q "^peer: $P/peers/torch_resnet20.py, not run (no " "$T/o3/summary.txt"

small OUT="$T/o6" SUMMARY="Device not supported" sh "$CK" >"$T/tests.out" 2>&1
rc=$?
check "tests: the op tests, the training test and memcheck, in order" sh -c "grep -o 'gpu-check: [a-z_0-9-]*: exit' '$T/o6/summary.txt' |
  tr -d '\n' | grep -qx 'gpu-check: test_cuda_ops: exitgpu-check: test_cuda_train: exitgpu-check: test_cuda_train_own: exitgpu-check: memcheck: exit'"
check "tests: a sanitizer that refuses the device is said, memcheck, racecheck and synccheck not run" sh -c "[ $rc -eq 3 ] &&
  grep -q 'refuses this device' '$T/o6/summary.txt' && grep -q '^not run: memcheck racecheck synccheck$' '$T/o6/summary.txt'"

# repro: two processes that give different checkpoints are a failure, naming the tensors
# that differ (a net-train whose second repro run takes another seed; python3 with msgpack)
R=$T/repro
mkdir -p "$R" "$T/py"
for f in "$P"/*; do ln -s "$f" "$R/"; done
rm "$R/net-train"
cat >"$R/net-train" <<EOF
#!/bin/sh
case " \$* " in *" --seed 3 "*)
  [ -e "$T/repro.once" ] && set -- \$(echo "\$@" | sed 's/--seed 3/--seed 4/')
  touch "$T/repro.once" ;;
esac
exec "$BIN/net-train" "\$@"
EOF
chmod +x "$R/net-train"
if have_pymsgpack; then
  ln -s "$(command -v "$PY")" "$T/py/python3"
  small GPU_PACK="$R" OUT="$T/o8" PATH="$T/py:$PATH" sh "$CK" demo >"$T/repro.out" 2>&1
  rc=$?
  check "repro: different checkpoints from the same seed: exit 1, said" sh -c "[ $rc -eq 1 ] &&
    grep -q '^repro: FAILED: the same seed in two processes gave different checkpoints' '$T/o8/summary.txt'"
  check "repro: the tensors that differ are named" grep -qE "^repro: [1-9][0-9]* of [0-9]+ tensors differ: [a-z]" \
    "$T/o8/summary.txt"
  check "repro: both checkpoints in the archive" sh -c "tar -tzf '$T/o8/logs.tar.gz' | grep -qx repro-1.ck-differs &&
    tar -tzf '$T/o8/logs.tar.gz' | grep -qx repro-2.ck-differs"
else
  t_skip "repro: different checkpoints" "python3 msgpack missing (python3-msgpack)"
fi

rm "$P/data/test.ds"
small OUT="$T/o4" sh "$CK" demo >"$T/demo.out" 2>&1
rc=$?
check "demo without data: exit 4 and the pack command named" sh -c "[ $rc -eq 4 ] &&
  grep -q 'gpu-pack.sh --data' '$T/o4/summary.txt'"

# tests/bench.sh's peer: a peer that prints no figure gives nan for the round, with its
# messages, and the bench goes on; PEER_PYTHON empty means no peer
printf 'echo "peer: out of memory" >&2\n' >"$T/silent.sh"
expect "bench: a peer without a figure: the bench goes on" 0 env DEVICE=cpu STEPS=1 BATCH=8 ROUNDS=1 THREADS=1 \
  PEER="$T/silent.sh" PEER_PYTHON=sh BN_BIN="$BIN" sh "$TOP/tests/bench.sh"
check "bench: its messages and nan for the round" sh -c "grep -q 'the PyTorch peer (all) gave no figure' '$T/err' &&
  grep -q 'peer: out of memory' '$T/err' && grep -q '^1	all	[0-9.]*	nan	nan$' '$T/out'"
expect "bench: PEER_PYTHON empty: no peer" 0 env DEVICE=cpu STEPS=1 BATCH=8 ROUNDS=1 THREADS=1 PEER="$T/silent.sh" \
  PEER_PYTHON= BN_BIN="$BIN" sh "$TOP/tests/bench.sh"
check "bench: no peer is said" grep -q "PyTorch peer not run (python3-torch not importable" "$T/out"
t_done
