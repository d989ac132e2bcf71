#!/bin/sh
# The CUDA sources keep the rules that recording a step into a CUDA graph relies on (no GPU
# needed: it reads kernels/*.cu). Stream capture records only work queued on the capturing
# stream; anything on the legacy default stream, or anything synchronous, fails the
# recording. So in the ops:
#   - every kernel launch names the backend's stream: <<<grid, block, shared, cuda_stream()>>>,
#     with its launch configuration on one line (so this check can read it);
#   - no synchronous call (cudaMemcpy, cudaMemset, cudaDeviceSynchronize,
#     cudaStreamSynchronize, or the cuda_mem.h functions that make them) in an op, except
#     where nothing is recorded: cuda_device.cu (the cuda_mem.h entry points themselves),
#     the table's mem_* entries, xent (its loss goes to the host: xent_rows is the one a
#     step records), sync, graph_launch (BN_CUDA_SYNC=1), the data-parallel BatchNorm
#     reduction (reduce_over_ranks: graphs need a single process), and the pinned host
#     buffer's growth (cuda_ctx_hscratch: it waits for the work that used the old buffer
#     before freeing it, and never grows while a step is recorded).
. "$(dirname "$0")/lib.sh"

# launches in DIR/*.cu not on cuda_stream() (or split over lines)
launch_bad() { grep -n '<<<' "$1"/*.cu | grep -v 'cuda_stream()>>>'; }
# synchronous calls in DIR/*.cu outside the functions allowed above
sync_bad() {
  for f in "$1"/*.cu; do
    case "$f" in */cuda_device.cu) continue;; esac
    awk '/^[A-Za-z].*\(/ { fn = $0 }
         /cudaMemcpy\(|cudaMemset\(|cudaDeviceSynchronize\(|cudaStreamSynchronize\(|cuda_(copy|to_host|to_device|memset|sync)\(/ &&
         fn !~ /reduce_over_ranks|[ *]mem_(alloc|free|upload|download|copy)\(|[ *]cuda_xent\(|cuda_sync_op\(|cuda_graph_launch\(|cuda_ctx_hscratch\(/ {
           print FILENAME ":" NR ": " $0 }' "$f"
  done
}

K="$TOP/kernels"
n=$(grep -h '<<<' "$K"/*.cu | wc -l)
[ "$n" -ge 20 ] && t_ok sees_launches || t_fail sees_launches "only $n launches found in $K"
bad=$(launch_bad "$K")
[ -z "$bad" ] && t_ok launches_on_stream || t_fail launches_on_stream "not on cuda_stream() (or split): $bad"
bad=$(sync_bad "$K")
[ -z "$bad" ] && t_ok no_sync_in_ops || t_fail no_sync_in_ops "synchronous calls in the ops: $bad"

# the checks can fail: a launch on the default stream, a synchronous copy in an op
mkdir "$T/k"
printf 'void op(void) {\n    k<<<1, 2>>>(x);\n    cudaMemcpy(a, b, 4, cudaMemcpyDeviceToHost);\n}\n' > "$T/k/x.cu"
printf 'static double reduce_over_ranks(ops *o) {\n    cudaMemcpy(a, b, 4, k);\n}\n' > "$T/k/y.cu"
[ -n "$(launch_bad "$T/k")" ] && t_ok launch_check_can_fail || t_fail launch_check_can_fail "not seen"
[ "$(sync_bad "$T/k" | wc -l)" = 1 ] && t_ok sync_check_can_fail || t_fail sync_check_can_fail "$(sync_bad "$T/k")"
t_done
