#!/bin/sh
# gpu-check.sh: run ON THE DEVICE MACHINE (through the device tool, with build/gpu carried;
# see docs/gpu.md). Finds the device's cuDNN, runs the CUDA op tests with each
# cuDNN algorithm choice printed, the GPU-vs-CPU training test, then the op tests once more
# under compute-sanitizer's memcheck, and
# writes the logs under $OUT (or /tmp/gpu-out). Ends with a short summary.
#   sh kernels/gpu-check.sh demo    instead: make demo's two trainings (ResNet-20, all
#     parameters and BN only, 4000 real training images, test on 1000) on the GPU for 4
#     epochs (to compare with make demo's CPU figures) and 60 (DEMO_EPOCHS), in fp32 and
#     tf32 (DEMO_PRECISIONS: the real TF32's accuracy effect, beside make precision's
#     simulated one), with the test accuracy and time of each; needs the pack made with --data.
#   sh kernels/gpu-check.sh bench   instead: tests/bench.sh on the GPU (DEVICE=cuda, the
#     PyTorch peer too when the device's python3 has torch), with the per-layer profile and
#     the device's peaks (the rounds replay CUDA graphs; the profile run goes op by op), then
#     one round without graphs (BN_GRAPH=0), one with the step's work on the host
#     (BN_DEVICE_DATA=0 BN_DEVICE_OPTIM=0) and one with --precision tf32 (~5 minutes).
cd "$(dirname "$0")/.." || exit 2
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1; head -n 12 "$out/nvidia-smi.txt"
chmod +x build/gpu/test_* build/gpu/net-* build/gpu/cifar-* 2>/dev/null   # in case the carry dropped the bits
dirs=$PWD/build/gpu/lib
# cuDNN may be a system library or come with the Python environment (pip's nvidia-cudnn wheel)
site=$(python3 -c 'import site; print(*site.getsitepackages())' 2>/dev/null)
for so in libcudnn.so.9 libcudart.so.13; do
    f=$(find /usr/local/cuda/lib64 /usr/local/cuda/ /usr/lib/x86_64-linux-gnu /usr/local/lib /opt $site -name "$so" \
        2>/dev/null | head -n 1)
    if [ -n "$f" ]; then dirs="$dirs:$(dirname "$f")"; echo "gpu-check: $so from $f"; else echo "gpu-check: no $so on this machine"; fi
done
export LD_LIBRARY_PATH="$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ldd build/gpu/test_cuda_ops >"$out/ldd.txt" 2>&1
if grep -q "not found" "$out/ldd.txt"; then     # nothing would start: stop before spending device time
    echo "gpu-check: missing libraries:"; grep "not found" "$out/ldd.txt"; exit 4
fi

if [ "${1:-}" = demo ]; then     # real data (gpu-pack.sh --data): make demo's training on the GPU
    [ -r build/gpu/data/train.ds ] && [ -r build/gpu/data/test.ds ] ||
        { echo "gpu-check: no build/gpu/data (pack with: sh kernels/gpu-pack.sh --data)"; exit 4; }
    dev=${DEVICE:-cuda}
    flags="--batch 128 --optimizer sgd --lr 0.1 --momentum 0.9 --wd 5e-4 --schedule cosine --augment crop-flip \
--normalize meanstd --seed 1 --device $dev"
    B=build/gpu
    echo "== make demo's runs on $dev: ResNet-20, 4000 CIFAR-10 training images, test on 1000"
    $B/net-init --arch resnet --depth 20 --width 16 --seed 1 -o "$out/init.ckpt" || exit 1
    precs=${DEMO_PRECISIONS:-fp32 tf32}     # tf32: the real accuracy effect (the CPU can only simulate it)
    [ "$dev" = cpu ] && precs=$(echo "$precs" | sed 's/tf32/tf32-sim/g')
    for ep in ${DEMO_EPOCHS:-4 60}; do
        for p in $precs; do
            for v in all bn; do
                r=$v-$ep-$p
                t0=$(date +%s.%N)
                $B/net-freeze --train $v "$out/init.ckpt" |
                    timeout 120 $B/net-train - --train $B/data/train.ds --test $B/data/test.ds $flags --epochs "$ep" \
                        --precision "$p" --log "$out/$r.tsv" -o "$out/$r.ckpt" 2>"$out/$r.err" ||
                    { cat "$out/$r.err"; exit 1; }
                t1=$(date +%s.%N)
                acc=$($B/net-eval "$out/$r.ckpt" $B/data/test.ds --device "$dev" --precision "$p" --format tsv |
                    awk -F'\t' '$1 == "accuracy" { print $2 }')
                secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
                echo "$v, $ep epochs, $p: test accuracy $acc, $secs s (net-train, start-up included)"
            done
        done
    done
    exit 0
fi

if [ "${1:-}" = bench ]; then
    name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
    case "$name" in                 # fp32 (non-tensor) GFLOP/s and memory GB/s, from the data sheets
    *H200*) peaks="67000 4800" ;;
    *H100*PCIe*) peaks="51000 2000" ;;
    *H100*) peaks="67000 3350" ;;
    *) peaks="0 0" ;;
    esac
    set -- $peaks
    echo "== bench on $name (peaks: $1 GFLOP/s fp32, $2 GB/s)"
    BN_BIN=build/gpu DEVICE=cuda STEPS=${STEPS:-200} ROUNDS=${ROUNDS:-3} PROFILE=1 BN_PEAK_GFLOPS=$1 BN_PEAK_GBS=$2 \
        timeout 240 sh tests/bench.sh >"$out/bench.log" 2>&1   # 240 + 3 x 90 s: one call of 560 s
    echo "exit $?"; cat "$out/bench.log"
    echo "== one round with every step op by op (BN_GRAPH=0: no CUDA graph)"
    BN_GRAPH=0 BN_BIN=build/gpu DEVICE=cuda STEPS=${STEPS:-200} ROUNDS=1 \
        timeout 90 sh tests/bench.sh >"$out/bench-nograph.log" 2>&1
    echo "exit $?"; grep -E '^(1|median)' "$out/bench-nograph.log"
    echo "== one round with the step's work on the host (BN_DEVICE_DATA=0 BN_DEVICE_OPTIM=0)"
    BN_DEVICE_DATA=0 BN_DEVICE_OPTIM=0 BN_BIN=build/gpu DEVICE=cuda STEPS=${STEPS:-200} ROUNDS=1 \
        timeout 90 sh tests/bench.sh >"$out/bench-host-step.log" 2>&1
    echo "exit $?"; grep -E '^(1|median)' "$out/bench-host-step.log"
    echo "== one round with --precision tf32 (the peer with --channels-last)"
    OURS_FLAGS="--precision tf32" PEER_FLAGS=--channels-last BN_BIN=build/gpu DEVICE=cuda STEPS=${STEPS:-200} \
        ROUNDS=1 timeout 90 sh tests/bench.sh >"$out/bench-tf32.log" 2>&1
    echo "exit $?"; grep -E '^(1|median)' "$out/bench-tf32.log"
    exit 0
fi

echo "== test_cuda_ops (BN_CUDA_VERBOSE=1: cuDNN choices on stderr)"
# time limits: 200 + 150 + 150 s fit one device call of 600 s (run with timeout_s about 560)
BN_CUDA_VERBOSE=1 timeout 200 ./build/gpu/test_cuda_ops >"$out/test.log" 2>"$out/test.err"
rc=$?
grep -v '^ok - ' "$out/test.log" | head -n 60
echo "exit $rc"

echo "== test_cuda_train (GPU vs CPU training end to end)"
timeout 150 ./build/gpu/test_cuda_train >"$out/train.log" 2>&1
rc2=$?
grep -v '^ok - ' "$out/train.log" | head -n 40
echo "exit $rc2"
[ "$rc" -eq 0 ] && rc=$rc2
# on the device machine nothing may skip: a skip means the GPU or cuDNN was not usable
if grep -q '^skip - ' "$out/test.log" "$out/train.log"; then
    echo "gpu-check: tests skipped on a GPU machine:"; grep -h '^skip - ' "$out/test.log" "$out/train.log" | head -n 5
    [ "$rc" -eq 0 ] && rc=3
fi

echo "== under compute-sanitizer memcheck (BN_CUDA_SYNC=1, BN_CUDNN_FIND=0: heuristics, no timing runs)"
cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer \
    2>/dev/null | head -n 1)
if [ -n "$cs" ]; then
    BN_CUDA_SYNC=1 BN_CUDNN_FIND=0 timeout 150 "$cs" --tool memcheck --print-limit 20 ./build/gpu/test_cuda_ops \
        >"$out/memcheck.log" 2>&1
    rc3=$?
    echo "exit $rc3"
    [ "$rc" -eq 0 ] && rc=$rc3
    grep -E '^(FAIL|# [0-9]+ passed)|ERROR SUMMARY|Invalid' "$out/memcheck.log" | head -n 20
else
    echo "compute-sanitizer not found"
fi
echo "== summary"
grep -E '^# [0-9]+ passed' "$out/test.log" "$out/train.log"
grep -c '^cuda: conv' "$out/test.err" | sed 's/^/cuDNN choices logged: /'
exit $rc
