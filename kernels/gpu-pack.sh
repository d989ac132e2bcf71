#!/bin/sh
# gpu-pack.sh: run HERE (the build machine) before a device run. Builds the GPU test
# programs and the bench's programs (net-train, net-init, net-freeze, cifar-synth, plus any
# named as arguments) without MPI and NCCL (MPI=0 NCCL=0, in build/gpu-build: the normal
# build is left alone; libnccl alone is 218 MB and the device has no MPI libraries), and
# packs them into build/gpu/ (ignored by git; name it in the device tool's `carry`) with
# the shared libraries they need (ldd) that the device machine may lack, except glibc,
# libstdc++/libgcc_s (the device has newer ones) and cuDNN (0.5 GB with its sub-libraries:
# far over the 64 MiB a call may carry; the device has its own, found by
# kernels/gpu-check.sh). libcudart (0.7 MB) travels: the runtime the code was built against.
# So does the bench's PyTorch peer (build/gpu/peers/), since ../shared stays here.
# usage: sh kernels/gpu-pack.sh [--data] [PROGRAM ...]   (PROGRAM: a tool's name, e.g. net-inspect)
#   --data: also the demo's real data for `gpu-check.sh demo`: the first 4000 training and
#   1000 test images of the CIFAR-10 sample (BN_DATA, default ../shared/data), 15 MB, in
#   build/gpu/data/ (the pack then holds about 57 MiB of the 64 a call may carry; more is
#   refused here, not at the call).
set -e
cd "$(dirname "$0")/.."
data=0
if [ "${1:-}" = --data ]; then data=1; shift; fi
G=build/gpu-build
make -s MPI=0 NCCL=0 BUILD=$G BIN=$G/bin >/dev/null
rm -rf build/gpu
mkdir -p build/gpu/lib
progs="$G/tests/test_cuda_ops $G/tests/test_cuda_train $G/tests/bench_conv"
for p in net-train net-init net-freeze net-eval cifar-synth "$@"; do progs="$progs $G/bin/$(basename "$p")"; done
for b in $progs; do
    [ -x "$b" ] || { echo "gpu-pack: $b is not a built program" >&2; exit 1; }
    cp "$b" build/gpu/
    strip --strip-debug "build/gpu/$(basename "$b")"   # symbols stay (backtraces); DWARF is ~1.3 MB a program
    ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | while read -r lib; do
        case "$(basename "$lib")" in
        libc.so.*|libm.so.*|libdl.so.*|librt.so.*|libpthread.so.*|ld-linux*|libstdc++.so.*|libgcc_s.so.*) ;;
        libcudnn*|libnccl*) ;;
        *) cp -L "$lib" build/gpu/lib/ ;;
        esac
    done
done
# the bench's PyTorch peer: ../shared does not travel to the device machine (only the checkout does)
peer=${BN_SHARED:-../shared}/peers/torch_resnet20.py
if [ -r "$peer" ]; then mkdir -p build/gpu/peers && cp "$peer" build/gpu/peers/
else echo "gpu-pack: no $peer: gpu-check.sh bench will run without the PyTorch peer" >&2; fi
if [ "$data" = 1 ]; then
    sample=${BN_DATA:-../shared/data}/cifar-10-sample.tar.gz
    [ -r "$sample" ] || { echo "gpu-pack: no $sample for --data" >&2; exit 1; }
    mkdir -p build/gpu/data
    t=$(mktemp -d)
    $G/bin/cifar-fetch --url "$sample" --allow-unofficial --split both -o "$t/train.ds" --test-output "$t/test.ds"
    $G/bin/cifar-subset --first 4000 "$t/train.ds" -o build/gpu/data/train.ds
    $G/bin/cifar-subset --first 1000 "$t/test.ds" -o build/gpu/data/test.ds
    rm -rf "$t"
fi
du -sh build/gpu
ls -l build/gpu build/gpu/lib
# the device tool carries at most 64 MiB a call: the pack and the working tree that travels
# with it (tracked files and untracked ones git does not ignore)
bytes=$(du -sb build/gpu | cut -f1)
tree=$(git ls-files -z -c -o --exclude-standard 2>/dev/null | xargs -0 -r stat -L -c %s 2>/dev/null |
    awk '{ s += $1 } END { print s + 0 }')
all=$((bytes + ${tree:-0}))
if [ "$all" -gt 67108864 ]; then
    echo "gpu-pack: build/gpu ($bytes bytes) and the working tree (${tree:-0}) make $all bytes," \
        "over the 64 MiB (67108864) a device call may carry" >&2
    exit 1
fi
echo "gpu-pack: $bytes bytes and the working tree's ${tree:-0}: $all of the 67108864 a call may carry"
