#!/bin/sh
# gpu-pack.sh: run HERE (the build machine) before a device run. Builds, then packs into
# build/gpu/ (ignored by git; name it in the device tool's `carry`) what the device machine
# needs to run our programs: the CUDA test binaries (plus any programs named as arguments)
# and the shared libraries they need (ldd) that the device machine may lack, except glibc,
# libstdc++/libgcc_s (the device has newer ones) and cuDNN (0.5 GB with its sub-libraries: far over the
# 64 MiB a call may carry; the device has its own, found by kernels/gpu-check.sh).
# libcudart (0.7 MB) travels: the runtime the code was built against.
# usage: sh kernels/gpu-pack.sh [bin/PROGRAM ...]
set -e
cd "$(dirname "$0")/.."
make -s >/dev/null
rm -rf build/gpu
mkdir -p build/gpu/lib
for b in build/tests/test_cuda_ops build/tests/test_cuda_train "$@"; do
    [ -x "$b" ] || { echo "gpu-pack: $b is not a built program" >&2; exit 1; }
    cp "$b" build/gpu/
    ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | while read -r lib; do
        case "$(basename "$lib")" in
        libc.so.*|libm.so.*|libdl.so.*|librt.so.*|libpthread.so.*|ld-linux*|libstdc++.so.*|libgcc_s.so.*) ;;
        libcudnn*) ;;
        *) cp -L "$lib" build/gpu/lib/ ;;
        esac
    done
done
du -sh build/gpu
ls -l build/gpu build/gpu/lib
