#!/bin/sh
# gpu-check.sh: run ON THE DEVICE MACHINE (through the device tool, with build/gpu carried;
# see docs/gpu.md, "Running the tests on a GPU machine"). Finds the device's cuDNN and CUDA
# runtime, then runs one of:
#   sh kernels/gpu-check.sh all     everything below in one call, most important first, each
#     part given what is left of GPU_DEADLINE (default 540 s from the start; a part that
#     would get under 20 s is skipped and named in the summary): the op tests, the training
#     test, the bench (2 rounds and the profile), make demo's runs, the bench's extra rounds,
#     memcheck. The first call of a session with a device should be this one: a machine
#     costs a minute or more to start, and a session has 15 minutes of device time.
#   sh kernels/gpu-check.sh         the CUDA op tests with each cuDNN algorithm choice
#     printed, the GPU-vs-CPU training test, then the op tests under compute-sanitizer's
#     memcheck.
#   sh kernels/gpu-check.sh bench   tests/bench.sh on the GPU (DEVICE=cuda, the PyTorch peer
#     too when the device's python3 has torch: the peer travels in the pack, since ../shared
#     does not), with the per-layer profile and the device's peaks (the rounds replay CUDA
#     graphs; the profile run goes op by op), then one round without graphs (BN_GRAPH=0), one
#     with the step's work on the host (BN_DEVICE_DATA=0 BN_DEVICE_OPTIM=0) and one with
#     --precision tf32 (~5 minutes).
#   sh kernels/gpu-check.sh demo    make demo's two trainings (ResNet-20, all parameters and
#     BN only, 4000 real training images, test on 1000) for 4 epochs (to compare with make
#     demo's CPU figures) and 60 (DEMO_EPOCHS), in fp32 and tf32 (DEMO_PRECISIONS: the real
#     TF32's accuracy effect, beside make precision's simulated one), with the test accuracy
#     and time of each; needs the pack made with --data.
# Logs go to $OUT (the device tool brings back at most 8 files): summary.txt, the main logs,
# and logs.tar.gz with every log. GPU_PACK names another pack (default build/gpu; a pack of
# the cudasim build rehearses this script without a GPU, docs/gpu.md says how).
cd "$(dirname "$0")/.." || exit 2
P=${GPU_PACK:-build/gpu}
[ -d "$P" ] || { echo "gpu-check: no pack at $P (make it on the build machine: sh kernels/gpu-pack.sh; carry it)" >&2; exit 4; }
P=$(cd "$P" && pwd)
out=${OUT:-/tmp/gpu-out}
mode=${1:-tests}
case "$mode" in all|tests|bench|demo) ;; *) echo "usage: gpu-check.sh [all|bench|demo]" >&2; exit 2 ;; esac
mkdir -p "$out" || { echo "gpu-check: cannot make $out (OUT)" >&2; exit 2; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
start=$(date +%s)
deadline=$((start + ${GPU_DEADLINE:-540}))
rc=0
skipped=""
exec 3>&1     # the call's output: notes go there and to the summary, whatever a part's output is redirected to
note() { echo "$*" | tee -a "$W/summary.txt" >&3; }

# stage NAME LIMIT CMD...: CMD under a time limit of LIMIT seconds or what is left before
# the deadline (less 10 s for the summary), whichever is less; skipped under 20 s.
# Its exit status (124: out of time; 99: skipped).
# (Environment for CMD goes through env: assignments before a function call are not
# undone after it by every sh.)
stage() {
    st_name=$1 st_lim=$2
    shift 2
    st_left=$((deadline - $(date +%s) - 10))
    [ "$st_left" -lt "$st_lim" ] && st_lim=$st_left
    if [ "$st_lim" -lt 20 ]; then
        note "gpu-check: $st_name skipped: $st_left s left before the deadline"
        skipped="$skipped $st_name"
        return 99
    fi
    st_t0=$(date +%s)
    timeout -k 5 "$st_lim" "$@"
    st_rc=$?
    note "gpu-check: $st_name: exit $st_rc$([ "$st_rc" -eq 124 ] && echo ' (out of time)') in $(($(date +%s) - st_t0)) s (limit $st_lim s)"
    return $st_rc
}
worse() { [ "$rc" -eq 0 ] && [ "$1" -ne 0 ] && [ "$1" -ne 99 ] && rc=$1; }

finish() {
    note "== summary ($mode, $(($(date +%s) - start)) s)"
    for f in test.log train.log memcheck.log; do
        [ -r "$W/$f" ] && grep -h -E '^# [0-9]+ passed' "$W/$f" | sed "s|^|$f: |" | tee -a "$W/summary.txt"
    done
    [ -s "$W/test.err" ] && note "cuDNN choices logged: $(grep -c '^cuda: conv' "$W/test.err")"
    [ -r "$W/memcheck.log" ] && grep -h 'ERROR SUMMARY' "$W/memcheck.log" | tee -a "$W/summary.txt"
    for f in bench.log bench-nograph.log bench-host-step.log bench-tf32.log; do
        [ -r "$W/$f" ] && grep -h '^median' "$W/$f" | sed "s|^|$f: |" | tee -a "$W/summary.txt"
    done
    [ -r "$W/demo.log" ] && grep -h 'test accuracy' "$W/demo.log" | tee -a "$W/summary.txt"
    if [ -n "$skipped" ]; then     # a part not run is not a pass
        note "skipped for time:$skipped"
        [ "$rc" -eq 0 ] && rc=5
    fi
    note "exit $rc"
    # at most 8 files come back: the summary, the main logs, and every log in one archive
    (cd "$W" && find . -type f ! -name '*.ckpt' | sed 's|^\./||' | sort | tar -czf "$out/logs.tar.gz" -T -)
    n=0
    for f in summary.txt test.log train.log bench.log demo.log memcheck.log test.err; do
        [ -r "$W/$f" ] && [ "$n" -lt 7 ] && cp "$W/$f" "$out/" && n=$((n + 1))
    done
    exit "$rc"
}

nvidia-smi >"$W/nvidia-smi.txt" 2>&1; head -n 12 "$W/nvidia-smi.txt"
chmod +x "$P"/test_* "$P"/net-* "$P"/cifar-* 2>/dev/null   # in case the carry dropped the bits
dirs=$P/lib
# cuDNN may be a system library or come with the Python environment (pip's nvidia-cudnn wheel)
site=$(python3 -c 'import site; print(*site.getsitepackages())' 2>/dev/null)
for so in libcudnn.so.9 libcudart.so.13; do
    f=$(find /usr/local/cuda/lib64 /usr/local/cuda/ /usr/lib/x86_64-linux-gnu /usr/local/lib /opt $site -name "$so" \
        2>/dev/null | head -n 1)
    if [ -n "$f" ]; then dirs="$dirs:$(dirname "$f")"; echo "gpu-check: $so from $f"; else echo "gpu-check: no $so on this machine"; fi
done
export LD_LIBRARY_PATH="$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ldd "$P/test_cuda_ops" >"$W/ldd.txt" 2>&1
if grep -q "not found" "$W/ldd.txt"; then     # nothing would start: stop before spending device time
    echo "gpu-check: missing libraries:"; grep "not found" "$W/ldd.txt"
    rc=4; finish
fi

# the op tests and the training test; a skip on a device machine means the GPU or cuDNN was
# not usable
run_tests() {
    echo "== test_cuda_ops (BN_CUDA_VERBOSE=1: cuDNN choices on stderr)"
    stage test_cuda_ops 200 env BN_CUDA_VERBOSE=1 "$P/test_cuda_ops" >"$W/test.log" 2>"$W/test.err"
    worse $?
    grep -v '^ok - ' "$W/test.log" | head -n 60
    echo "== test_cuda_train (GPU vs CPU training end to end)"
    stage test_cuda_train 150 "$P/test_cuda_train" >"$W/train.log" 2>&1
    worse $?
    grep -v '^ok - ' "$W/train.log" | head -n 40
    if grep -q '^skip - ' "$W/test.log" "$W/train.log" 2>/dev/null; then
        note "gpu-check: tests skipped on a GPU machine:"
        grep -h '^skip - ' "$W/test.log" "$W/train.log" | head -n 5
        worse 3
    fi
}

run_memcheck() {
    echo "== under compute-sanitizer memcheck (BN_CUDA_SYNC=1, BN_CUDNN_FIND=0: heuristics, no timing runs)"
    cs=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer \
        /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -n 1)}
    if [ -z "$cs" ] || [ "$cs" = none ]; then note "gpu-check: no compute-sanitizer: memcheck not run"; return; fi
    stage memcheck 150 env BN_CUDA_SYNC=1 BN_CUDNN_FIND=0 "$cs" --tool memcheck --print-limit 20 "$P/test_cuda_ops" \
        >"$W/memcheck.log" 2>&1
    worse $?
    grep -E '^(FAIL|# [0-9]+ passed)|ERROR SUMMARY|Invalid' "$W/memcheck.log" | head -n 20
}

# bench_main ROUNDS, bench_extra: tests/bench.sh on the GPU
peaks() {
    name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
    case "$name" in                 # fp32 (non-tensor) GFLOP/s and memory GB/s, from the data sheets
    *H200*) echo 67000 4800 ;;
    *H100*PCIe*) echo 51000 2000 ;;
    *H100*) echo 67000 3350 ;;
    *) echo 0 0 ;;
    esac
}
PEER=${PEER:-../shared/peers/torch_resnet20.py}     # ../shared does not travel: the pack has the peer
[ -r "$PEER" ] || PEER=$P/peers/torch_resnet20.py
export PEER BN_BIN="$P"
bench_main() {
    set -- $(peaks) "$1"
    echo "== bench on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1) (peaks: $1 GFLOP/s fp32, $2 GB/s)"
    [ -r "$PEER" ] || note "gpu-check: no PyTorch peer ($PEER): the bench runs without it"
    stage bench 240 env DEVICE=cuda STEPS="${STEPS:-200}" ROUNDS="$3" PROFILE=1 BN_PEAK_GFLOPS="$1" BN_PEAK_GBS="$2" \
        sh tests/bench.sh >"$W/bench.log" 2>&1
    worse $?
    cat "$W/bench.log"
}
bench_extra() {
    echo "== one round with every step op by op (BN_GRAPH=0: no CUDA graph)"
    stage bench-nograph 90 env BN_GRAPH=0 DEVICE=cuda STEPS="${STEPS:-200}" ROUNDS=1 sh tests/bench.sh \
        >"$W/bench-nograph.log" 2>&1
    worse $?
    grep -E '^(1|median)' "$W/bench-nograph.log" || tail -n 3 "$W/bench-nograph.log"
    echo "== one round with --precision tf32 (the peer with --channels-last)"
    stage bench-tf32 90 env OURS_FLAGS="--precision tf32" PEER_FLAGS=--channels-last DEVICE=cuda \
        STEPS="${STEPS:-200}" ROUNDS=1 sh tests/bench.sh >"$W/bench-tf32.log" 2>&1
    worse $?
    grep -E '^(1|median)' "$W/bench-tf32.log" || tail -n 3 "$W/bench-tf32.log"
    echo "== one round with the step's work on the host (BN_DEVICE_DATA=0 BN_DEVICE_OPTIM=0)"
    stage bench-host-step 90 env BN_DEVICE_DATA=0 BN_DEVICE_OPTIM=0 DEVICE=cuda STEPS="${STEPS:-200}" ROUNDS=1 \
        sh tests/bench.sh >"$W/bench-host-step.log" 2>&1
    worse $?
    grep -E '^(1|median)' "$W/bench-host-step.log" || tail -n 3 "$W/bench-host-step.log"
}

# make demo's runs on real data (gpu-pack.sh --data)
run_demo() {
    if ! [ -r "$P/data/train.ds" ] || ! [ -r "$P/data/test.ds" ]; then
        note "gpu-check: no $P/data (pack with: sh kernels/gpu-pack.sh --data)"; worse 4; return
    fi
    dev=${DEVICE:-cuda}
    flags="--batch 128 --optimizer sgd --lr 0.1 --momentum 0.9 --wd 5e-4 --schedule cosine --augment crop-flip \
--normalize meanstd --seed 1 --device $dev"
    D=$W/demo
    mkdir -p "$D"
    echo "== make demo's runs on $dev: ResNet-20 on the pack's data (gpu-pack.sh --data: the sample's first 4000" \
        "training images, test on its first 1000)" | tee "$W/demo.log"
    "$P/net-init" --arch resnet --depth 20 --width 16 --seed 1 -o "$D/init.ckpt" 2>>"$W/demo.log" || { worse 1; return; }
    precs=${DEMO_PRECISIONS:-fp32 tf32}     # tf32: the real accuracy effect (the CPU can only simulate it)
    [ "$dev" = cpu ] && precs=$(echo "$precs" | sed 's/tf32/tf32-sim/g')
    for ep in ${DEMO_EPOCHS:-4 60}; do
        for p in $precs; do
            for v in all bn; do
                r=$v-$ep-$p
                t0=$(date +%s.%N)
                "$P/net-freeze" --train $v "$D/init.ckpt" -o "$D/$r.in.ckpt" 2>>"$W/demo.log" || { worse 1; return; }
                stage "demo-$r" 120 "$P/net-train" "$D/$r.in.ckpt" --train "$P/data/train.ds" --test "$P/data/test.ds" \
                    $flags --epochs "$ep" --precision "$p" --log "$D/$r.tsv" -o "$D/$r.ckpt" 2>"$D/$r.err" >/dev/null
                s=$?
                worse $s
                [ "$s" -eq 99 ] && continue
                [ "$s" -eq 0 ] || { cat "$D/$r.err"; continue; }
                acc=$("$P/net-eval" "$D/$r.ckpt" "$P/data/test.ds" --device "$dev" --precision "$p" --format tsv |
                    awk -F'\t' '$1 == "accuracy" { print $2 }')
                wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
                secs=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") c = i } NR > 1 && c { s += $c }
                    END { printf "%.1f", s }' "$D/$r.tsv")
                echo "$v, $ep epochs, $p: test accuracy $acc, $secs s training (the log's epochs), $wall s wall" |
                    tee -a "$W/demo.log"
            done
        done
    done
}

case "$mode" in
all)
    run_tests
    bench_main "${ROUNDS:-2}"
    run_demo
    bench_extra
    run_memcheck ;;
tests)
    run_tests
    run_memcheck ;;
bench)
    bench_main "${ROUNDS:-3}"
    bench_extra ;;
demo)
    run_demo ;;
esac
finish
