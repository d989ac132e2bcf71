#!/bin/sh
# make bench: training throughput of ResNet-20 at batch 128 (full and BN-only) on the CPU,
# alternating with the PyTorch peer (../shared/peers/torch_resnet20.py) when Debian's
# python3-torch is importable, over several rounds; prints images/s per round and the median
# ratios. Synthetic images (throughput does not depend on pixel values).
#   ROUNDS=5 STEPS=20 THREADS=2 DEVICE=cpu BATCH=128 sh tests/bench.sh   (the defaults; ~2.5 min)
# PROFILE=1: after the rounds, one more full and BN-only run of ours with BN_PROFILE=1 (time
#   per layer kind and direction, ms per step, GFLOP/s of the convolutions; with
#   BN_PEAK_GFLOPS=<the machine's fp32 peak> also their % of it; docs/cpu-ops.md explains it).
# RSS=1: then the peak resident memory of one full training run over a synthetic
#   50,000-image stream (CIFAR-10's size), stopped by SIGINT after RSS_SECONDS (default 60),
#   measured with /usr/bin/time -v (the budget is 500 MB).
# PEER_FLAGS: more flags for the peer (e.g. --channels-last); OURS_FLAGS: for net-train (e.g.
#   --precision tf32). PEER: the peer's script (none: no peer); PEER_PYTHON: its python3
#   (default the first that imports torch; empty: no peer); PEER_LD_LIBRARY_PATH: its library
#   path, where it differs from ours (kernels/gpu-check.sh sets these).
# On a GPU: DEVICE=cuda STEPS=200 (an epoch of 20 steps lasts milliseconds there), and
#   PROFILE=1 BN_PEAK_GFLOPS=67000 BN_PEAK_GBS=4800 (H200; H100 SXM: 67000 and 3350) for the
#   per-layer table with each layer's share of the fp32 peak or of the memory bandwidth.
# BN_FAST=0 in the environment turns the cpu backend's fast path off (plain NCHW ops) for
#   before/after comparisons; BN_CPU_ZCONV=0 only its own AVX-512 convolutions (oneDNN for
#   every shape), BN_CPU_CONV=direct only oneDNN's Winograd.
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}; STEPS=${STEPS:-20}; THREADS=${THREADS:-2}; DEVICE=${DEVICE:-cpu}; BATCH=${BATCH:-128}
DEPTH=${DEPTH:-20}
PEER=${PEER:-../shared/peers/torch_resnet20.py}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
B=${BN_BIN:-bin}   # BN_BIN: another build
n=$((BATCH * STEPS))
$B/cifar-synth --count "$n" --seed 1 -o "$T/synth.ds"
$B/net-init --arch resnet --depth "$DEPTH" --seed 1 -o "$T/all.ckpt" 2>/dev/null
$B/net-freeze --train bn "$T/all.ckpt" -o "$T/bn.ckpt" 2>/dev/null

# PEER_PYTHON: the peer's python3 when the caller found it (empty: none); PEER_LD_LIBRARY_PATH:
# the peer's library path when the caller's own differs (gpu-check.sh: its pack's libraries)
peer_env() {
  if [ -n "${PEER_LD_LIBRARY_PATH+x}" ]; then LD_LIBRARY_PATH=$PEER_LD_LIBRARY_PATH "$@"; else "$@"; fi
}
PYT=""
if [ -n "${PEER_PYTHON+x}" ]; then PYT=$PEER_PYTHON
else
  for c in /usr/bin/python3 python3; do
    if peer_env "$c" -c 'import torch' 2>/dev/null; then PYT=$c; break; fi
  done
fi
[ -r "$PEER" ] || PYT=""

# ours MODE: images/s of the second epoch (the first one warms caches and plans up)
# (a failure shows net-train's messages and ends the bench)
ours() {
  if ! $B/net-train "$T/$1.ckpt" --train "$T/synth.ds" --epochs 2 --batch "$BATCH" --lr 0.1 \
    --augment none --normalize none --device "$DEVICE" --threads "$THREADS" ${OURS_FLAGS:-} \
    --log "$T/log.tsv" -o "$T/out.ckpt" 2>"$T/ours.err"; then
    echo "bench: net-train ($1) failed:" >&2; tail -n 20 "$T/ours.err" >&2; return 1
  fi
  # a step that could not be recorded goes op by op: still a figure, but not the one meant
  grep -m 1 "could not be recorded" "$T/ours.err" | sed "s/^/bench: ($1) /" >&2
  awk -F'\t' 'NR==1{for(i=1;i<=NF;i++) if($i=="images_per_s") c=i} NR>1{v=$c} END{print v}' "$T/log.tsv"
}
# (no figure: its messages, and nan for the round)
peer() {
  # shellcheck disable=SC2086  # PEER_FLAGS: words on purpose
  v=$(peer_env "$PYT" "$PEER" --threads "$THREADS" --batch "$BATCH" --steps "$STEPS" --depth "$DEPTH" --device "$DEVICE" \
    ${PEER_FLAGS:-} 2>"$T/peer.err" | awk -v m="$1" -F'\t' '$1==m {sub("img_per_s=","",$3); print $3}')
  if [ -z "$v" ]; then echo "bench: the PyTorch peer ($1) gave no figure:" >&2; tail -n 5 "$T/peer.err" >&2; v=nan; fi
  echo "$v"
}
median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

echo "bench: ResNet-$DEPTH, batch $BATCH, $STEPS steps/epoch, $THREADS threads, device $DEVICE, $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
if [ "$PEER" = none ]; then echo "bench: PyTorch peer not run (PEER=none)"
elif [ ! -r "$PEER" ]; then echo "bench: PyTorch peer not run (no $PEER; PEER= names it)"
elif [ -z "$PYT" ]; then echo "bench: PyTorch peer not run (python3-torch not importable: scripts/deps.sh --bench installs it)"; fi
printf 'round\tmode\tours_img_s\ttorch_img_s\tratio\n'
: > "$T/rounds"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  for mode in all bn; do
    o=$(ours "$mode")
    p=nan; ratio=nan
    if [ -n "$PYT" ]; then
      pm=all; [ "$mode" = bn ] && pm=bnonly
      p=$(peer "$pm"); ratio=$(awk -v a="$o" -v b="$p" 'BEGIN{ if (b+0 > 0) printf "%.2f", a/b; else print "nan"}')
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$mode" "$o" "$p" "$ratio" | tee -a "$T/rounds"
  done
  r=$((r+1))
done
for mode in all bn; do
  mo=$(awk -F'\t' -v m="$mode" '$2==m{print $3}' "$T/rounds" | median)
  mr=$(awk -F'\t' -v m="$mode" '$2==m{print $5}' "$T/rounds" | grep -v nan | median)
  pe=$(awk -F'\t' -v m="$mode" '$2==m{print $4}' "$T/rounds" | grep -v nan | median)
  awk -v m="$mode" -v o="$mo" -v p="$pe" -v r="$mr" 'BEGIN{
    printf "median %s: ours %s img/s (%.2f s per 50,000-image epoch); PyTorch %s img/s", m, o, (o > 0 ? 50000 / o : 0), p
    if (p != "nan" && p + 0 > 0) printf " (%.2f s)", (50000 / p)
    printf "; ratio vs PyTorch %s\n", r }'
done
a=$(awk -F'\t' '$2=="all"{print $3}' "$T/rounds" | median); b=$(awk -F'\t' '$2=="bn"{print $3}' "$T/rounds" | median)
awk -v a="$a" -v b="$b" 'BEGIN{ if (a>0) printf "BN-only / full speed-up: %.2fx\n", b/a }'

if [ "${PROFILE:-0}" = 1 ]; then
  for mode in all bn; do
    echo "profile $mode (BN_PROFILE=1, 2 epochs of $STEPS steps):"
    if ! BN_PROFILE=1 $B/net-train "$T/$mode.ckpt" --train "$T/synth.ds" --epochs 2 --batch "$BATCH" --lr 0.1 \
      --augment none --normalize none --device "$DEVICE" --threads "$THREADS" ${OURS_FLAGS:-} -o "$T/out.ckpt" \
      >"$T/profile.txt" 2>&1; then
      echo "bench: the profile run ($mode) failed:" >&2; tail -n 20 "$T/profile.txt" >&2; exit 1
    fi
    grep -v '^net-train' "$T/profile.txt" || true
  done
fi

if [ "${RSS:-0}" = 1 ]; then
  if [ -x /usr/bin/time ]; then
    $B/cifar-synth --count 50000 --seed 2 -o "$T/big.ds"
    rm -f "$T/synth.ds"
    timeout -s INT "${RSS_SECONDS:-60}" /usr/bin/time -v $B/net-train "$T/all.ckpt" --train "$T/big.ds" --epochs 1 \
      --batch "$BATCH" --device "$DEVICE" --threads "$THREADS" -o "$T/out.ckpt" > "$T/rss.txt" 2>&1 || true
    kb=$(awk -F': ' '/Maximum resident set size/{print $2}' "$T/rss.txt")
    st=$(grep -o 'stopped by [A-Z]* at epoch [0-9]* step [0-9]*' "$T/rss.txt" || echo "ran to the end")
    if [ -n "$kb" ]; then
      awk -v k="$kb" -v s="$st" 'BEGIN{ printf "peak RSS, full training on 50,000 synthetic images (%s): %.0f MB (budget 500 MB)\n", s, k/1024 }'
    else
      echo "bench: RSS not measured: $(tail -1 "$T/rss.txt")"
    fi
  else
    echo "bench: RSS not measured (/usr/bin/time missing)"
  fi
fi
