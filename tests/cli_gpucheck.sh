#!/bin/sh
# kernels/gpu-check.sh, the script a session with a GPU runs on the device machine, rehearsed
# here without one: a pack of this build's programs (the CUDA tests skip, --device cuda is
# refused) with small synthetic data, so that what its one call depends on is checked before
# device time is spent: the parts run in order under the deadline, a part that cannot finish
# in time is skipped and named, a skip or failure is not a pass, the bench's failures show
# their messages, the PyTorch peer is found in the pack (../shared does not travel), and at
# most the 8 files the device tool brings back are left in $OUT with every log in one archive.
. "$(dirname "$0")/lib.sh"
CK=$TOP/kernels/gpu-check.sh
B=${BN_BUILD:-$TOP/build}
if [ ! -x "$B/tests/test_cuda_ops" ] || [ ! -x "$B/tests/test_cuda_train" ]; then
  t_skip gpucheck "no CUDA test programs in $B/tests (the CUDA path was not built)"; t_done; exit
fi
if nvidia-smi -L >/dev/null 2>&1; then
  t_skip gpucheck "a GPU is present: run kernels/gpu-check.sh itself (docs/gpu.md)"; t_done; exit
fi

P=$T/pack
mkdir -p "$P/lib" "$P/data" "$P/peers"
for f in "$B/tests/test_cuda_ops" "$B/tests/test_cuda_train" "$BIN"/net-* "$BIN"/cifar-*; do ln -s "$f" "$P/"; done
cifar-synth --count 200 --seed 1 -o "$P/data/train.ds" 2>/dev/null
cifar-synth --count 64 --seed 2 -o "$P/data/test.ds" 2>/dev/null
printf 'raise SystemExit("peer stand-in")\n' >"$P/peers/torch_resnet20.py"
# small sizes: a bench of 2 steps of 16 images, a demo of 1 epoch in fp32 on the CPU
small() {
  env GPU_PACK="$P" DEVICE=cpu DEMO_EPOCHS=1 DEMO_PRECISIONS=fp32 COMPUTE_SANITIZER=none STEPS=2 BATCH=16 \
    PEER="$T/no-peer.py" "$@"
}

expect_err "usage: an unknown part is refused" 2 "usage: gpu-check.sh" sh "$CK" everything
expect_err "no pack: said, before anything runs" 4 "no pack at $T/none" env GPU_PACK="$T/none" sh "$CK"

O=$T/o1
small OUT="$O" sh "$CK" all >"$T/all.out" 2>&1
rc=$?
check "all: no GPU here, so the tests skip: exit 3, not a pass" [ "$rc" -eq 3 ]
check "all: the skip is said" grep -q "tests skipped on a GPU machine" "$O/summary.txt"
check "all: each part ran in order" sh -c "grep -o 'gpu-check: [a-z_-]*[0-9a-z-]*:' '$O/summary.txt' | tr -d '\n' |
  grep -q 'test_cuda_ops:.*test_cuda_train:.*bench:.*demo-all-1-fp32:.*demo-bn-1-fp32:.*bench-nograph:.*bench-tf32:.*bench-host-step:'"
check "all: the bench's failure shows net-train's message" grep -q "no usable CUDA device" "$O/bench.log"
check "all: the peer comes from the pack when PEER's file is absent" sh -c "! grep -q 'peer not run (no ' '$O/bench.log'"
check "all: the demo's two runs give a test accuracy" sh -c "grep -c '^all, 1 epochs, fp32: test accuracy 0\.[0-9]*,' '$O/demo.log' |
  grep -qx 1 && grep -c '^bn, 1 epochs, fp32: test accuracy 0\.[0-9]*,' '$O/demo.log' | grep -qx 1"
check "all: memcheck's absence is said" grep -q "memcheck not run" "$O/summary.txt"
check "all: the summary closes with the exit status" sh -c "tail -n 1 '$O/summary.txt' | grep -qx 'exit 3'"
check "all: at most 8 files left in OUT, no folders" sh -c "[ \$(find '$O' -type f | wc -l) -le 8 ] &&
  [ \$(find '$O' -mindepth 1 -type d | wc -l) -eq 0 ]"
tar -tzf "$O/logs.tar.gz" >"$T/tar.lst" 2>&1
check "all: the archive holds every log, the demo's curves among them" sh -c "grep -qx demo/all-1-fp32.tsv '$T/tar.lst' &&
  grep -qx bench-tf32.log '$T/tar.lst' && grep -qx ldd.txt '$T/tar.lst' && grep -qx train.log '$T/tar.lst'"
check "all: no checkpoints in the archive" sh -c "! grep -q 'ckpt' '$T/tar.lst'"
check "all: the call's output ends with the summary" sh -c "tail -n 1 '$T/all.out' | grep -qx 'exit 3'"

rm "$P/peers/torch_resnet20.py"
small OUT="$T/o2" GPU_DEADLINE=15 sh "$CK" all >"$T/late.out" 2>&1
rc=$?
check "deadline: nothing fits in 15 s: exit 5, not a pass" [ "$rc" -eq 5 ]
check "deadline: every part skipped is named" grep -q "skipped for time: test_cuda_ops test_cuda_train bench demo-all-1-fp32" \
  "$T/o2/summary.txt"
check "deadline: nothing ran" sh -c "[ -s '$T/o2/summary.txt' ] && ! grep -q ': exit [0-9]* in ' '$T/o2/summary.txt'"

small OUT="$T/o3" sh "$CK" bench >"$T/bench.out" 2>&1
check "bench alone: a pack without the peer is said" grep -q "no PyTorch peer" "$T/o3/summary.txt"

rm "$P/data/test.ds"
small OUT="$T/o4" sh "$CK" demo >"$T/demo.out" 2>&1
rc=$?
check "demo without data: exit 4 and the pack command named" sh -c "[ $rc -eq 4 ] &&
  grep -q 'gpu-pack.sh --data' '$T/o4/summary.txt'"
t_done
