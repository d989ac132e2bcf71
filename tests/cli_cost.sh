#!/bin/sh
# net-cost: the counted work of a step against figures worked out by hand from the
# architecture (ResNet-20, width 16), the roofline's arithmetic at chosen peaks, what the
# trainable flags and the fusion sets change, usage and bad input.
. "$(dirname "$0")/lib.sh"

for p in net-cost net-init net-freeze; do
  [ -x "$BIN/$p" ] || { t_skip "all" "$p not built"; t_done; exit; }
done
net-init --depth 20 --width 16 --seed 1 -o "$T/r20.ck" 2>/dev/null
net-freeze --train bn "$T/r20.ck" -o "$T/bn.ck" 2>/dev/null
net-init --arch bottleneck --depth 20 --seed 1 -o "$T/bot.ck" 2>/dev/null

expect "--help" 0 net-cost --help
check "--help names --machine" grep -q -- "--machine" "$T/out"
expect "--version" 0 net-cost --version
expect_err "--batch 0" 2 "batch" net-cost --batch 0 "$T/r20.ck"
expect_err "--machine bad" 2 "machine" net-cost --machine a100 "$T/r20.ck"
expect_err "--peak junk" 2 "peak" net-cost --peak 100 "$T/r20.ck"
expect_err "--peak negative" 2 "peak" net-cost --peak 100,-1 "$T/r20.ck"
expect_err "missing file" 1 "nothere" net-cost "$T/nothere.ck"
head -c 3000 "$T/r20.ck" > "$T/trunc.ck"
expect_err "truncated checkpoint" 1 "trunc" net-cost "$T/trunc.ck"
expect_err "two inputs" 2 "unexpected" net-cost "$T/r20.ck" "$T/r20.ck"

# One image forward through ResNet-20's convolutions (2 flops a multiply-add, direct):
#   stem 3->16 at 32x32: 2*3*16*9*1024 = 884736; stage 1: 6 x 2*16*16*9*1024 = 6 x 4718592;
#   stage 2: 16->32 s2 2*16*32*9*256 = 2359296, 5 x 4718592, projection 2*16*32*256 = 262144;
#   stage 3: the same as stage 2: 2359296 + 5 x 4718592 + 262144; linear 64->10: 1280.
# All parameters: forward + data gradient (none for the stem: nothing before it trains) +
# filter gradient; BN only: no filter gradient at all.
fwd=$(( 884736 + 6*4718592 + 2*(2359296 + 5*4718592 + 262144) ))
all=$(( 128 * (3*fwd - 884736 + 3*1280) ))
# BN only: the linear layer is frozen too (net-freeze --train bn), so it has no filter gradient
bn=$(( 128 * (2*fwd - 884736 + 2*1280) ))
expect "tsv, all parameters" 0 net-cost --format tsv "$T/r20.ck"
cp "$T/out" "$T/all.tsv"
check "all: $all flops a step" awk -F'\t' -v w="$all" '$1=="step" {d = $3*1e9 - w; exit !(d < 1e5 && d > -1e5)}' "$T/all.tsv"
check "all: the rows add up to the step" awk -F'\t' 'NR>1 && $1!="step" {s += $3+$4+$5} $1=="step" {t=$3} END {exit !(s-t < 1e-3 && t-s < 1e-3)}' "$T/all.tsv"
check "all: the stem has no data gradient" awk -F'\t' '$1 ~ /^conv 3->16/ {exit !($4 == 0 && $5 > 0)}' "$T/all.tsv"
# bn+relu 16x32x32, 4 layers at batch 128: forward x, y = 2 x 4*128*16*1024 bytes each; backward x, dy, dx
check "bn+relu 16x32x32: 67.109 / 100.663 MB" awk -F'\t' '$1=="bn+relu 16x32x32" {exit !($2==4 && $6=="67.109" && $7=="100.663")}' "$T/all.tsv"
check "the cuda fusions: BN+add+ReLU rows" grep -q "^bn+add+relu 16x32x32" "$T/all.tsv"
net-cost --format tsv --fusions cpu "$T/r20.ck" > "$T/cpu.tsv"
check "the cpu fusions: no BN+add+ReLU, add+ReLU rows" sh -c "! grep -q '^bn+add+relu' '$T/cpu.tsv' && grep -q '^add+relu 16x32x32' '$T/cpu.tsv'"
net-cost --format tsv --fusions none "$T/r20.ck" > "$T/none.tsv"
check "no fusions: more bytes, the same flops" awk -F'\t' 'FNR==1 {f++} $1=="step" {fl[f]=$3; b[f]=$6} END {exit !(fl[1]==fl[2] && b[1] < b[2])}' "$T/all.tsv" "$T/none.tsv"

net-cost --format tsv --storage bf16 "$T/r20.ck" > "$T/b16.tsv"
check "--storage bf16: half an activation-only row" awk -F'\t' '$1=="bn+relu 16x32x32" {exit !($6=="33.554" && $7=="50.332")}' "$T/b16.tsv"
check "--storage bf16: weights stay fp32 (more than half the step's bytes)" awk -F'\t' 'FNR==1 {f++} $1=="step" {b[f]=$6} END {exit !(b[2] > b[1]/2 && b[2] < b[1])}' "$T/all.tsv" "$T/b16.tsv"
expect_err "--storage bad" 2 "storage" net-cost --storage fp8 "$T/r20.ck"
expect "tsv, BN only" 0 net-cost --format tsv "$T/bn.ck"
check "bn only: $bn flops a step" awk -F'\t' -v w="$bn" '$1=="step" {d = $3*1e9 - w; exit !(d < 1e5 && d > -1e5)}' "$T/out"
check "bn only: no filter gradient anywhere" awk -F'\t' 'NR>1 && $1!="step" && ($5 != 0 || $8 != 0) {bad=1} END {exit bad}' "$T/out"

# the roofline: with 1 GB/s and an endless peak every row is bound by its bytes, ms = MB
net-cost --format tsv --peak 1e15,1 "$T/r20.ck" > "$T/bw.tsv"
check "--peak 1e15,1: bytes bound, ms = MB" awk -F'\t' '$1=="step" {d = $9 - $6; exit !(d < 1e-2 && d > -1e-2)}' "$T/bw.tsv"
check "--peak 1e15,1: every row says bytes" awk -F'\t' 'NR>1 && $1!="step" && $10!="bytes" && $10!="-" {bad=1} END {exit bad}' "$T/bw.tsv"
net-cost --format tsv --peak 1,1e15 "$T/r20.ck" > "$T/fl.tsv"
check "--peak 1,1e15: flops bound, ms = GFLOP x 1000" awk -F'\t' '$1=="step" {d = $9 - 1000*$3; exit !(d < 1 && d > -1)}' "$T/fl.tsv"
expect "text, h200 tf32" 0 net-cost -m h200 --precision tf32 "$T/r20.ck"
check "text: the epoch's least time" grep -q "^epoch of 50000 images (391 steps" "$T/out"
check "text: names the machine" grep -q "h200 tf32: 494700 GFLOP/s" "$T/out"
expect "--batch 256 --images 1000" 0 net-cost --format tsv --batch 256 --images 1000 "$T/r20.ck"
check "batch 256: twice batch 128's flops" awk -F'\t' -v w="$all" '$1=="step" {d = $3*1e9 - 2*w; exit !(d < 2e5 && d > -2e5)}' "$T/out"
expect "stdin, the bottleneck net" 0 sh -c "net-cost < '$T/bot.ck'"
check "bottleneck: conv rows" grep -q "^conv " "$T/out"
t_done
