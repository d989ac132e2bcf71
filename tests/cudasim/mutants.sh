#!/bin/sh
# mutants.sh: shows that the CUDA tests, run under tests/cudasim, fail when kernels/ has the
# kinds of bug a GPU kernel gets: a missing barrier, a divergent shuffle, a grid-stride loop one
# element too far, a host pointer handed to a kernel, a wrong shuffle direction, a lost store,
# a race on shared memory, a vector index or alignment mistake, a wrong offset in a split launch.
# Each mutant is one sed edit of one file in a scratch copy of the tree (the sim build copied
# beside it, so only that file is recompiled); the copy's test_cuda_ops must then fail (a failed
# check, or the emulator stopping with what went wrong), in thread order or, failing that,
# under CUDASIM_ORDER=reverse (a race). It says which mutants survived.
#
# usage: tests/cudasim/mutants.sh [NAME...]     (make sim-mutants; about a minute a mutant)
# The tally closes with "N passed, N failed" where a pass is a mutant caught.
cd "$(dirname "$0")/../.." || exit 2
build=${BN_BUILD:-build}
[ -x "$build/sim/tests/test_cuda_ops" ] || { echo "mutants: $build/sim/tests/test_cuda_ops is not built (make sim)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/bn-mutants.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT INT TERM
cp -a Makefile mk pipelines lib kernels tests tools scripts "$work"/ 2>/dev/null
mkdir -p "$work/$build" && cp -a "$build/sim" "$work/$build/"
[ -f "$build/dist.flags" ] && cp -a "$build/dist.flags" "$work/$build/"

# the copy's test_cuda_ops under the schedule ORDER (forward or reverse), its output in run.log
run_ops() { (cd "$work" && CUDASIM_ORDER=$1 timeout 600 "./$build/sim/tests/test_cuda_ops" >"$work/run.log" 2>&1); }

P=0; F=0; survivors=""
# name | file | sed script | what it breaks    (fd 3: make and the tests keep stdin)
while IFS='|' read -r name file script what <&3; do
  [ -n "$name" ] || continue
  if [ $# -gt 0 ]; then hit=; for a in "$@"; do [ "$a" = "$name" ] && hit=1; done; [ -n "$hit" ] || continue; fi
  cp "$work/$file" "$work/$file.orig"
  sed -e "$script" "$work/$file.orig" > "$work/$file"
  if cmp -s "$work/$file" "$work/$file.orig"; then
    echo "not ok - $name: the edit did not apply to $file (the source changed: update the mutant)"; F=$((F+1))
  elif ! (cd "$work" && make --no-print-directory -j2 sim BUILD="$build" >"$work/make.log" 2>&1); then
    echo "not ok - $name: the mutant did not build"; tail -n 5 "$work/make.log"; F=$((F+1))
  else
    # in thread order, then (if that passed) last thread first: a race may hide in one order
    order=forward; run_ops forward; rc=$?
    [ "$rc" -eq 0 ] && { order=reverse; run_ops reverse; rc=$?; }
    why=$(grep -m 1 -E 'check failed|^cudasim:' "$work/run.log" | sed 's/^ *//')
    failed=$(sed -n 's/^FAIL - //p' "$work/run.log" | tr '\n' ' ')
    if [ "$rc" -ne 0 ]; then
      echo "ok - $name caught ($what): $order order, exit $rc${failed:+, failed: $failed}"
      echo "    ${why:-(no message)}"; P=$((P+1))
    else
      echo "not ok - $name survived ($what): test_cuda_ops passed in both orders"; F=$((F+1)); survivors="$survivors $name"
    fi
  fi
  mv "$work/$file.orig" "$work/$file" && touch "$work/$file"   # newer than the mutant's objects
done 3<<'EOF'
no-barrier|kernels/cuda_reduce.cuh|s/^    __syncthreads();$//|block_sum2: warp 0 reads the other warps' sums before they are stored
gemm-race|kernels/cuda_linear.cu|/acc = fmaf/{n;s/__syncthreads();//;}|k_gemm: the next tile overwrites shared memory while other threads still read it
divergent-shfl|kernels/cuda_reduce.cuh|s/if (warp == 0) {/if (warp == 0 \&\& lane < nwarps) {/|block_sum2: a full-mask shuffle after some lanes of the warp have left
stride-past-end|kernels/cuda_internal.h|s/i < (n); i +=/i <= (n); i +=/|GRID_STRIDE: one element past the end of every array
host-pointer|kernels/cuda_linear.cu|s/d_loss, d_hit, NULL);/loss, d_hit, NULL);/|cuda_xent: the caller's host pointer passed to the kernel
shfl-up|kernels/cuda_elem.cu|s/a += __shfl_down_sync(0xffffffffu, a, off)/a += __shfl_up_sync(0xffffffffu, a, off)/|k_gap_fwd: the warp sum shuffled the wrong way
lost-mean|kernels/cuda_bn.cu|s/if (s == 0) mean\[c\] = mu_s;/if (s == 1) mean[c] = mu_s;/|k_bn_partial: the batch mean never stored when a channel has one slice
mean-race|kernels/cuda_bn.cu|s/^        __syncthreads();$//|k_bn_partial: threads read the mean thread 0 makes with no barrier between (in thread order it is there in time)
vec-channel|kernels/cuda_index.h|s/cuda_div_make((uint32_t)(hw \/ V))/cuda_div_make((uint32_t)hw)/|cuda_chan_make: a float4 group's channel counted in values, not groups
vec-misaligned|kernels/cuda_index.h|s/if ((uintptr_t)p\[i\] % 16) return 1;/if ((uintptr_t)p[i] % 4) return 1;/|cuda_vec_width: float4 accesses at addresses 4 bytes off 16-byte alignment
vec-mask-unchecked|kernels/cuda_bn.cu|s/cuda_span_make(C, d->hw, count, xs, dys, yms, dxs)/cuda_span_make(C, d->hw, count, xs, dys, NULL, dxs)/|k_bn_bwd_dx: float4 chosen without looking at the ReLU mask's alignment
conv3-round-race|kernels/cuda_conv3.cu|s/^        __syncthreads();   \/\/ the last round's reads are done$//|k_conv3: the next round's channels overwrite shared memory while other threads still read it
conv3-border|kernels/cuda_conv3.cu|s/e += blockDim.x) tile\[e\] = 0.0f;/e += blockDim.x) tile[e] = tile[e];/|k_conv3: the zero border of the staged images never written
conv3-flip|kernels/cuda_conv3.cu|s/(flip ? 8 - tap : tap)/tap/|k_conv3: the data gradient with the forward's taps, not flipped
conv3-last-round|kernels/cuda_conv3.cu|s/cin - i0 < C3_CI ? cin - i0 : C3_CI/C3_CI/|k_conv3: a last round of fewer channels read past the input's channels
conv3-prefetch|kernels/cuda_conv3.cu|s/c3_fetch<ROWS>(pre, src + (size_t)next \* HW,/c3_fetch<ROWS>(pre, src + (size_t)i0 * HW,/|k_conv3: the next round's pixels read from this round's channels
conv3-rows|kernels/cuda_conv3.cu|s/const float \*tb = tile + (cc \* nb + b) \* img + s \* ROWS \* P + x;/const float *tb = tile + (cc * nb + b) * img + s * 4 * P + x;/|k_conv3: a strip's rows found as if every variant had 4 rows a thread
conv3-band-race|kernels/cuda_conv3.cu|s/^        __syncthreads();   \/\/ the last band's reads are done$//|k_conv3_filter: the next band overwrites shared memory while other warps still read it
conv3-window|kernels/cuda_conv3.cu|s/yy = ys + j - 1;/yy = ys + j;/|k_conv3_filter: the staged rows one row off the image's
conv3-lost-partial|kernels/cuda_conv3.cu|s/for (int z = 0; z < nz; z++) s +=/for (int z = 1; z < nz; z++) s +=/|k_conv3_sum: the first block's partial sums left out
split-offset|kernels/cuda_internal.h|s/launch(n0 \* per_image, /launch(0 * n0 * per_image, /|by_image_chunks: every launch of a split op starts at image 0
EOF
[ -n "$survivors" ] && echo "# survivors:$survivors"
echo "# $P passed, $F failed"
[ "$F" -eq 0 ]
