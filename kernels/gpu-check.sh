#!/bin/sh
# gpu-check.sh: run ON THE DEVICE MACHINE (through the device tool, with build/gpu carried;
# see docs/gpu.md, "Running the tests on a GPU machine"). Finds the device's cuDNN and CUDA
# runtime, then runs one of:
#   sh kernels/gpu-check.sh all     everything below in one call, in this order: the op tests,
#     the training test, the bench (2 rounds and the profile), make demo's runs, the same
#     seed trained twice (two processes: the same bytes), memcheck, the bench's extra
#     rounds. Each part gets its own limit or what is left of GPU_DEADLINE
#     (default 540 s from the start, less 10 s for the summary), whichever is less, and is
#     skipped, and named in the summary, when that is under the least it needs. The first
#     call of a session with a device should be this one: a machine costs a minute or more
#     to start, and a session has 15 minutes of device time. Give the call a timeout_s of
#     GPU_DEADLINE + 40 or more.
#   sh kernels/gpu-check.sh [tests] the CUDA op tests with each cuDNN algorithm choice
#     printed, the GPU-vs-CPU training test (with cuDNN's convolutions, then with
#     BN_CUDA_CONV=own), then the op tests under compute-sanitizer's
#     memcheck, and bench_conv at batch 2 under racecheck and synccheck.
#   (When the op tests skip, no usable GPU, the call stops after the tests, saying why;
#   GPU_ON_SKIP=go goes on, as tests/cli_gpucheck.sh's rehearsal without a GPU does.)
#   sh kernels/gpu-check.sh bench   tests/bench.sh on the GPU (DEVICE=cuda, the PyTorch peer
#     too when the device's python3 has torch: the peer travels in the pack, since ../shared
#     does not), with the per-layer profile and the device's peaks (the rounds replay CUDA
#     graphs; the profile run goes op by op), then bench_conv (each of ResNet-20's
#     convolutions, cuDNN against kernels/cuda_conv3.cu), two rounds with the profile with
#     BN_CUDA_CONV=own (kernels/cuda_conv3.cu; the second with BN_CUDA_CONV3_ROWS=4), one
#     with --precision tf32, one with the algorithms chosen by timing (BN_CUDNN_FIND=1),
#     one without graphs (BN_GRAPH=0) and one with the step's work on the host (BN_DEVICE_DATA=0 BN_DEVICE_OPTIM=0) (~6 minutes).
#   sh kernels/gpu-check.sh demo    make demo's two trainings (ResNet-20, all parameters and
#     BN only, 4000 real training images, test on 1000) for 4 epochs (to compare with make
#     demo's CPU figures) and 60 (DEMO_EPOCHS), in fp32 and tf32 (DEMO_PRECISIONS: the real
#     TF32's accuracy effect, beside make precision's simulated one), with the test accuracy
#     and time of each, then one epoch trained twice from the same seed, which must give the
#     same checkpoint; needs the pack made with --data.
# Exit status: 0 all ran and passed; 1 a failure; 3 tests skipped (no usable GPU or cuDNN);
# 4 the pack is incomplete (a library, the data); 5 a part not run (time, no sanitizer);
# 6 a part out of time; 2 usage. The first of these met wins.
# $OUT (at most 8 files come back) gets, as each part ends: summary.txt (every part's exit
# status and time, its tallies, medians or accuracies), test.log, test.err, train.log,
# bench.log, demo.log, memcheck.log, and logs.tar.gz with every other log (nvidia-smi, ldd,
# the extra rounds, the demo's curves). GPU_PACK names another pack (default build/gpu);
# tests/cli_gpucheck.sh rehearses this script here, without a GPU, with a pack of the CPU build.
cd "$(dirname "$0")/.." || exit 2
mode=${1:-tests}
case "$mode" in all|tests|bench|demo) ;; *) echo "usage: gpu-check.sh [all|tests|bench|demo]" >&2; exit 2 ;; esac
case "${GPU_DEADLINE:-540}" in
''|*[!0-9]*) echo "gpu-check: GPU_DEADLINE: '$GPU_DEADLINE' is not a number of seconds" >&2; exit 2 ;;
esac
P=${GPU_PACK:-build/gpu}
[ -d "$P" ] || { echo "gpu-check: no pack at $P (make it on the build machine: sh kernels/gpu-pack.sh; carry it)" >&2; exit 4; }
P=$(cd "$P" && pwd)
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out" || { echo "gpu-check: cannot make $out (OUT)" >&2; exit 2; }
W=$(mktemp -d) || { echo "gpu-check: cannot make a temporary folder" >&2; exit 2; }
rm -f "$out/summary.txt"
start=$(date +%s)
deadline=$((start + ${GPU_DEADLINE:-540}))
rc=0
not_run=""
finished=0
exec 3>&1     # the call's output: notes go there and to the summary, whatever a part's output is redirected to
note() { printf '%s\n' "$*" | tee -a "$out/summary.txt" >&3; }
worse() { [ "$rc" -eq 0 ] && [ "$1" -ne 0 ] && [ "$1" -ne 99 ] && rc=$1; }
# the logs that are not in $OUT themselves, packed again after each part (a call cut short
# still brings back what had ended)
pack_logs() { (cd "$W" && find . -type f ! -name '*.ckpt' | sed 's|^\./||' | sort | tar -czf "$out/logs.tar.gz" -T -); }

# stage NAME LIMIT LEAST CMD...: CMD under a time limit of LIMIT seconds or what is left
# before the deadline, whichever is less; skipped (status 99) when that is under LEAST. Its
# exit status, or 6 when it ran out of time (124 or 137 from timeout: the device tool would
# take those for its own limit). Environment for CMD goes through env (assignments before a
# function call are not undone after it by every sh).
stage() {
    st_name=$1 st_lim=$2 st_least=$3
    shift 3
    st_left=$((deadline - $(date +%s) - 10))
    [ "$st_left" -lt "$st_lim" ] && st_lim=$st_left
    if [ "$st_lim" -lt "$st_least" ]; then
        note "gpu-check: $st_name skipped: $st_left s left before the deadline, it needs $st_least"
        not_run="$not_run $st_name"
        return 99
    fi
    st_t0=$(date +%s)
    timeout -k 5 "$st_lim" "$@" 3>&-
    st_rc=$?
    st_how=""
    case "$st_rc" in 124|137) st_how=" (out of time)" ;; esac
    note "gpu-check: $st_name: exit $st_rc$st_how in $(($(date +%s) - st_t0)) s (limit $st_lim s)"
    pack_logs
    [ -n "$st_how" ] && return 6
    return $st_rc
}

finish() {
    [ "$finished" = 1 ] && return
    finished=1
    [ -n "${1:-}" ] && note "gpu-check: stopped by $1" && worse 1
    if [ -n "$not_run" ]; then     # a part not run is not a pass
        note "not run:$not_run"
        worse 5
    fi
    note "exit $rc ($mode, $(($(date +%s) - start)) s)"
    pack_logs
    echo "== summary"
    cat "$out/summary.txt"
    rm -rf "$W"
    exit "$rc"
}
trap 'finish SIGTERM' TERM
trap 'finish SIGINT' INT
trap 'finish SIGHUP' HUP

timeout 20 nvidia-smi >"$W/nvidia-smi.txt" 2>&1; head -n 12 "$W/nvidia-smi.txt"
gpu=$(timeout 20 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
note "gpu-check: $mode on ${gpu:-no GPU named by nvidia-smi}, pack $P"
chmod +x "$P"/test_* "$P"/bench_* "$P"/net-* "$P"/cifar-* 2>/dev/null   # in case the carry dropped the bits

# cuDNN may be a system library or come with the Python environment (pip's nvidia-* wheels):
# the likely folders first, then one bounded search
site=$(timeout 30 python3 -c 'import site; print(*site.getsitepackages())' 2>/dev/null)
find_lib() {
    for d in $(ls -d $(for s in $site; do echo "$s/nvidia/*/lib"; done) 2>/dev/null) /usr/local/cuda/lib64 \
        /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu /usr/local/lib; do
        [ -e "$d/$1" ] && { echo "$d/$1"; return; }
    done
    timeout 30 find /usr/local/cuda/ /opt $site -name "$1" -print -quit 2>/dev/null
}
orig_ldp=${LD_LIBRARY_PATH-}
dirs=$P/lib
for so in libcudnn.so.9 libcudart.so.13; do
    f=$(find_lib "$so")
    if [ -n "$f" ]; then dirs="$dirs:$(dirname "$f")"; echo "gpu-check: $so from $f"; else note "gpu-check: no $so on this machine"; fi
done
export LD_LIBRARY_PATH="$dirs${orig_ldp:+:$orig_ldp}"
ldd "$P/test_cuda_ops" >"$W/ldd.txt" 2>&1
if grep -q "not found" "$W/ldd.txt"; then     # nothing would start: stop before spending device time
    note "gpu-check: missing libraries: $(grep "not found" "$W/ldd.txt" | awk '{ print $1 }' | tr '\n' ' ')"
    rc=4; finish
fi

# the op tests and the training test; a skip on a device machine means the GPU or cuDNN was
# not usable
run_tests() {
    echo "== test_cuda_ops (BN_CUDA_VERBOSE=1: cuDNN choices on stderr)"
    stage test_cuda_ops 200 20 env BN_CUDA_VERBOSE=1 "$P/test_cuda_ops" >"$out/test.log" 2>"$out/test.err"
    worse $?
    grep -v '^ok - ' "$out/test.log" | head -n 60
    echo "== test_cuda_train (GPU vs CPU training end to end)"
    stage test_cuda_train 150 20 "$P/test_cuda_train" >"$out/train.log" 2>&1
    worse $?
    grep -v '^ok - ' "$out/train.log" | head -n 40
    echo "== test_cuda_train with BN_CUDA_CONV=own (the 3x3 stride-1 convolutions by kernels/cuda_conv3.cu)"
    stage test_cuda_train_own 150 20 env BN_CUDA_CONV=own "$P/test_cuda_train" >"$W/train-own.log" 2>&1
    worse $?
    grep -v '^ok - ' "$W/train-own.log" | head -n 40
    for f in "$out/test.log" "$out/train.log" "$W/train-own.log"; do
        t=$(grep -h -E '^# [0-9]+ passed' "$f")
        [ -n "$t" ] && note "${f##*/}: $t"
    done
    t=$(grep -h -E '^# (own |tf32 )?conv worst error' "$out/test.log")
    [ -n "$t" ] && printf '%s\n' "$t" | while IFS= read -r l; do note "$l"; done
    # the device and the cuDNN found at run time, as the backend saw them (BN_CUDA_VERBOSE's first line)
    dv=$(grep -m 1 '^cuda: .* SMs), cuDNN ' "$out/test.err" 2>/dev/null)
    [ -n "$dv" ] && note "backend: ${dv#cuda: }"
    [ -s "$out/test.err" ] && note "cuDNN choices logged: $(grep -c '^cuda: conv' "$out/test.err"), of which" \
        "$(grep -c '^cuda: conv.*(fallback)' "$out/test.err") fell back to the GEMM algorithm (no candidate qualified)"
    if grep -q '^skip - ' "$out/test.log" "$out/train.log" 2>/dev/null; then
        note "gpu-check: tests skipped on a GPU machine:"
        grep -h '^skip - ' "$out/test.log" "$out/train.log" | head -n 5
        worse 3
    fi
}

run_memcheck() {
    echo "== under compute-sanitizer memcheck (BN_CUDA_SYNC=1, BN_CUDNN_FIND=0: heuristics, no timing runs)"
    cs=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer \
        /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -n 1)}
    if [ -z "$cs" ] || [ "$cs" = none ]; then
        note "gpu-check: no compute-sanitizer: memcheck, racecheck and synccheck not run"
        not_run="$not_run memcheck racecheck synccheck"; return
    fi
    stage memcheck 150 90 env BN_CUDA_SYNC=1 BN_CUDNN_FIND=0 "$cs" --tool memcheck --report-api-errors no --print-limit 20 \
        "$P/test_cuda_ops" >"$out/memcheck.log" 2>&1
    s=$?
    if [ "$s" -ne 99 ]; then
        if grep -q -i "device not supported" "$out/memcheck.log"; then   # gVisor: KINDS.md
            note "gpu-check: compute-sanitizer refuses this device (runtime without its support):" \
                "memcheck, racecheck and synccheck not run"
            not_run="$not_run memcheck racecheck synccheck"; return
        fi
        worse $s
        grep -E '^(FAIL|# [0-9]+ passed)|ERROR SUMMARY|Invalid' "$out/memcheck.log" | head -n 20
        t=$(grep -h -E 'ERROR SUMMARY|^# [0-9]+ passed' "$out/memcheck.log" | tr '\n' ' ')
        note "memcheck: ${t:-no summary}"
    fi
    # shared memory and barriers: racecheck and synccheck over every convolution kernel, cuDNN's
    # and cuda_conv3.cu's, on each of ResNet-20's shapes (bench_conv at batch 2, one call each)
    for tool in racecheck synccheck; do
        stage "$tool" 90 30 env BN_CUDNN_FIND=0 "$cs" --tool "$tool" --print-limit 20 "$P/bench_conv" --batch 2 \
            --reps 1 >"$W/$tool.log" 2>&1
        s=$?
        [ "$s" -eq 99 ] && continue
        worse $s
        t=$(grep -h -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$W/$tool.log" | tr '\n' ' ')
        note "$tool (bench_conv --batch 2): ${t:-no summary}"
    done
}

# bench_main ROUNDS, bench_extra: tests/bench.sh on the GPU. The peer runs with the
# machine's own library path (not the pack's), its python3 found once here.
case "$gpu" in                 # fp32 (non-tensor) GFLOP/s and memory GB/s, from the data sheets
*H200*) peaks="67000 4800" ;;
*H100*PCIe*) peaks="51000 2000" ;;
*H100*) peaks="67000 3350" ;;
*) peaks="0 0" ;;
esac
find_peer() {
    PEER=${PEER:-../shared/peers/torch_resnet20.py}     # ../shared does not travel: the pack has the peer
    [ "$PEER" = none ] || [ -r "$PEER" ] || PEER=$P/peers/torch_resnet20.py
    PEER_PYTHON=""
    if [ "$PEER" = none ]; then why="PEER=none"
    elif [ ! -r "$PEER" ]; then why="no $PEER"
    else
        why="no python3 here imports torch"
        for c in python3 /usr/bin/python3; do
            if env LD_LIBRARY_PATH="$orig_ldp" timeout 60 "$c" -c 'import torch' 2>/dev/null; then PEER_PYTHON=$c; break; fi
        done
    fi
    if [ -n "$PEER_PYTHON" ]; then note "peer: $PEER, with $PEER_PYTHON"; else note "peer: $PEER, not run ($why)"; fi
    export PEER PEER_PYTHON PEER_LD_LIBRARY_PATH="$orig_ldp" BN_BIN="$P"
}
medians() {    # medians LOG NAME: the bench's median lines into the summary
    grep -h '^median' "$1" | sed "s|^|$2: |" | while IFS= read -r l; do note "$l"; done
}
bench_main() {
    set -- $peaks "$1"
    echo "== bench on ${gpu:-?} (peaks: $1 GFLOP/s fp32, $2 GB/s)"
    stage bench 240 60 env DEVICE=cuda STEPS="${STEPS:-200}" ROUNDS="$3" PROFILE=1 BN_PEAK_GFLOPS="$1" \
        BN_PEAK_GBS="$2" sh tests/bench.sh >"$out/bench.log" 2>&1
    worse $?
    cat "$out/bench.log"
    medians "$out/bench.log" bench
    recorded "$out/bench.log"
}
recorded() {   # recorded LOG: bench.sh's line for a run whose steps could not be recorded, into the summary
    rl=$(grep -m 1 "could not be recorded" "$1")
    [ -z "$rl" ] || note "$rl"
}
bench_round() {    # bench_round NAME PEER ENV...: one round, into $W/NAME.log, within br_limit s
    br_name=$1 br_peer=$2
    shift 2
    stage "$br_name" "$br_limit" 40 env "$@" PEER="$br_peer" DEVICE=cuda STEPS="${STEPS:-200}" ROUNDS=1 sh tests/bench.sh \
        >"$W/$br_name.log" 2>&1
    worse $?
    grep -E '^(1|median)' "$W/$br_name.log" || tail -n 3 "$W/$br_name.log"
    medians "$W/$br_name.log" "$br_name"
    recorded "$W/$br_name.log"
}
br_limit=90
bench_own() {      # bench_own NAME ENV...: a round with BN_CUDA_CONV=own and the profile (so 150 s)
    bo_name=$1
    shift
    set -- $peaks "$@"
    bo_g=$1 bo_b=$2
    shift 2
    br_limit=150
    bench_round "$bo_name" none BN_CUDA_CONV=own PROFILE=1 BN_PEAK_GFLOPS="$bo_g" BN_PEAK_GBS="$bo_b" "$@"
    br_limit=90
}
bench_extra() {     # most telling first: the time may run out
    echo "== ResNet-20's convolutions one by one, cuDNN against kernels/cuda_conv3.cu (bench_conv)"
    stage bench-conv 120 20 "$P/bench_conv" >"$W/bench-conv.log" 2>&1
    worse $?
    cat "$W/bench-conv.log"
    grep '^step convolutions' "$W/bench-conv.log" | while IFS= read -r l; do note "bench-conv: $l"; done
    echo "== one round with BN_CUDA_CONV=own (3x3 stride-1 convolutions by kernels/cuda_conv3.cu), with the profile"
    bench_own bench-own
    echo "== the same with 4 rows a thread in every layer (BN_CUDA_CONV3_ROWS=4; the default takes 2 at 8x8)"
    bench_own bench-own-rows4 BN_CUDA_CONV3_ROWS=4
    echo "== one round with --precision tf32 (the peer with --channels-last)"
    bench_round bench-tf32 "$PEER" OURS_FLAGS="--precision tf32" PEER_FLAGS=--channels-last
    echo "== one round with the algorithms chosen by timing (BN_CUDNN_FIND=1; the default is cuDNN's heuristics)"
    bench_round bench-find none BN_CUDNN_FIND=1
    echo "== one round with every step op by op (BN_GRAPH=0: no CUDA graph)"
    bench_round bench-nograph none BN_GRAPH=0          # the peer's figure would repeat the main bench's
    echo "== one round with the step's work on the host (BN_DEVICE_DATA=0 BN_DEVICE_OPTIM=0)"
    bench_round bench-host-step none BN_DEVICE_DATA=0 BN_DEVICE_OPTIM=0
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
        "training images, test on its first 1000)" | tee "$out/demo.log"
    timeout 60 "$P/net-init" --arch resnet --depth 20 --width 16 --seed 1 -o "$D/init.ckpt" 2>>"$out/demo.log" ||
        { note "gpu-check: demo: net-init failed"; worse 1; return; }
    precs=${DEMO_PRECISIONS:-fp32 tf32}     # tf32: the real accuracy effect (the CPU can only simulate it)
    [ "$dev" = cpu ] && precs=$(echo "$precs" | sed 's/tf32/tf32-sim/g')
    for ep in ${DEMO_EPOCHS:-4 60}; do
        for p in $precs; do
            for v in all bn; do
                r=$v-$ep-$p
                t0=$(date +%s.%N)
                timeout 60 "$P/net-freeze" --train $v "$D/init.ckpt" -o "$D/$r.in.ckpt" 2>>"$out/demo.log" ||
                    { note "gpu-check: demo: net-freeze failed"; worse 1; return; }
                stage "demo-$r" 120 20 "$P/net-train" "$D/$r.in.ckpt" --train "$P/data/train.ds" \
                    --test "$P/data/test.ds" $flags --epochs "$ep" --precision "$p" --log "$D/$r.tsv" -o "$D/$r.ckpt" \
                    2>"$D/$r.err" >/dev/null
                s=$?
                worse $s
                [ "$s" -eq 99 ] && continue
                [ "$s" -eq 0 ] || { tail -n 5 "$D/$r.err"; continue; }
                if timeout 60 "$P/net-eval" "$D/$r.ckpt" "$P/data/test.ds" --device "$dev" --precision "$p" \
                    --format tsv >"$D/$r.eval" 2>>"$D/$r.err"; then
                    acc=$(awk -F'\t' '$1 == "accuracy" { print $2 }' "$D/$r.eval")
                else
                    acc="? (net-eval failed: $(tail -n 1 "$D/$r.err"))"; worse 1
                fi
                wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
                secs=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") c = i } NR > 1 && c { s += $c }
                    END { printf "%.1f", s }' "$D/$r.tsv")
                l="$v, $ep epochs, $p: test accuracy $acc, $secs s training (the log's epochs), $wall s wall"
                rl=$(grep -m 1 "could not be recorded" "$D/$r.err" | cut -c 1-200)
                [ -z "$rl" ] || l="$l; not recorded: $rl"
                echo "$l" >>"$out/demo.log"
                note "$l"
            done
        done
    done
}

# the tests found no usable GPU (the driver older than the runtime, cuDNN not loading): the
# other parts would only fail the same way; the reason is in test.log
# (GPU_ON_SKIP=go goes on: tests/cli_gpucheck.sh rehearses the parts where no GPU is)
no_gpu_stop() {
    [ "${GPU_ON_SKIP:-stop}" = go ] && return 0
    grep -q '^skip - ' "$out/test.log" 2>/dev/null || return 0
    note "gpu-check: no usable GPU: $(grep -m 1 '^skip - ' "$out/test.log" | cut -c 1-300); the other parts not run"
    finish
}

# the same seed and inputs, two processes: the same checkpoint, byte for byte (the
# algorithms are cuDNN's heuristics' choice, not timed; every sum of ours in a fixed order)
run_repro() {
    [ -r "$W/demo/init.ckpt" ] && [ -r "$P/data/train.ds" ] || return 0   # run_demo said why
    dev=${DEVICE:-cuda}
    for k in 1 2; do
        stage "repro-$k" 60 15 "$P/net-train" "$W/demo/init.ckpt" --train "$P/data/train.ds" --epochs 1 --batch 128 \
            --lr 0.1 --momentum 0.9 --augment crop-flip --seed 3 --device "$dev" -o "$W/repro-$k.ckpt" \
            2>"$W/repro-$k.err" >/dev/null
        s=$?
        worse $s
        [ "$s" -eq 99 ] && return 0
        [ "$s" -eq 0 ] || { tail -n 5 "$W/repro-$k.err"; return 0; }
    done
    if cmp -s "$W/repro-1.ckpt" "$W/repro-2.ckpt"; then
        note "repro: the same seed in two processes gave the same checkpoint ($(wc -c <"$W/repro-1.ckpt") bytes)"
    else
        note "repro: FAILED: the same seed in two processes gave different checkpoints ($(cmp "$W/repro-1.ckpt" \
            "$W/repro-2.ckpt" 2>&1 | head -n 1))"
        # which tensors (the device's python3 has msgpack); the two go into logs.tar.gz
        env LD_LIBRARY_PATH="$orig_ldp" timeout 30 python3 - "$W/repro-1.ckpt" "$W/repro-2.ckpt" <<'EOF' 2>&1 |
import msgpack, sys
def tensors(path):
    out = {}
    for o in msgpack.Unpacker(open(path, "rb"), raw=False, strict_map_key=False):
        if isinstance(o, dict) and o.get("kind") == "checkpoint": out = {}
        elif isinstance(o, dict) and "data" in o and "name" in o: out[o["name"]] = o["data"]
    return out
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
diff = [n for n in a if a[n] != b.get(n)]
print("repro: %d of %d tensors differ: %s" % (len(diff), len(a), ", ".join(diff[:8])))
EOF
            head -n 3 | while IFS= read -r l; do note "$l"; done
        cp "$W/repro-1.ckpt" "$W/repro-1.ck-differs" && cp "$W/repro-2.ckpt" "$W/repro-2.ck-differs"
        worse 1
    fi
}

case "$mode" in
all)
    run_tests
    no_gpu_stop
    find_peer
    bench_main "${ROUNDS:-2}"
    run_demo
    run_repro
    run_memcheck
    bench_extra ;;
tests)
    run_tests
    no_gpu_stop
    run_memcheck ;;
bench)
    find_peer
    bench_main "${ROUNDS:-3}"
    bench_extra ;;
demo)
    run_demo
    run_repro ;;
esac
finish
