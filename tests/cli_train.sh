#!/bin/sh
# cli_train.sh: net-train and net-eval from the command line: options, exit codes, the log,
# checkpoints per --every, determinism, resume (after --pick and after SIGINT), NaN, and a
# short real-data run (ResNet-20 all parameters vs BN only) when the CIFAR-10 sample is there.
. "$(dirname "$0")/lib.sh"

for p in net-train net-eval net-init cifar-synth; do
  [ -x "$BIN/$p" ] || { t_skip "all" "$p not built"; t_done; exit; }
done

cifar-synth --count 300 --seed 1 --pattern gradient -o "$T/syn.ds" 2>/dev/null
cifar-synth --count 100 --seed 2 --pattern gradient -o "$T/syntest.ds" 2>/dev/null
net-init --depth 8 --width 4 --seed 1 -o "$T/init.ck" 2>/dev/null

# sections NAME FILE: the number of checkpoints in a stream (python msgpack when there)
sections() { "$PY" -c '
import msgpack, sys
n = 0
for o in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, strict_map_key=False):
    if isinstance(o, dict) and o.get("kind") == "checkpoint": n += 1
print(n)' "$1"; }
# last_section FILE OUT: copies the bytes of the last checkpoint of a stream
last_section() { "$PY" -c '
import msgpack, sys
data = open(sys.argv[1], "rb").read()
u = msgpack.Unpacker(raw=False, strict_map_key=False); u.feed(data)
start = 0; pos = 0
for o in u:
    if isinstance(o, dict) and o.get("kind") == "checkpoint": start = pos
    pos = u.tell()
open(sys.argv[2], "wb").write(data[start:])' "$1" "$2"; }
state() { "$PY" -c '
import msgpack, sys
h = None
for o in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, strict_map_key=False):
    if isinstance(o, dict) and o.get("kind") == "checkpoint": h = o
k = sys.argv[2]
print(h[k] if k in h else h["state"].get(k))' "$1" "$2"; }

# ---- usage ------------------------------------------------------------------------------
expect "train --help" 0 net-train --help
check "train --help mentions --resume" grep -q -- "--resume" "$T/out"
expect "train --version" 0 net-train --version
expect_err "train needs --train" 2 "train DATA is required" net-train "$T/init.ck"
expect_err "train --batch 0" 2 "batch" net-train "$T/init.ck" --train "$T/syn.ds" --batch 0
expect_err "train --optimizer bad" 2 "optimizer" net-train "$T/init.ck" --train "$T/syn.ds" --optimizer rmsprop
expect_err "train --schedule bad" 2 "schedule" net-train "$T/init.ck" --train "$T/syn.ds" --schedule linear
expect_err "train --augment bad" 2 "augment" net-train "$T/init.ck" --train "$T/syn.ds" --augment mixup
expect_err "train --recipe bad" 2 "recipe" net-train "$T/init.ck" --train "$T/syn.ds" --recipe fast
expect_err "train --device bad" 2 "device" net-train "$T/init.ck" --train "$T/syn.ds" --device tpu
expect_err "train --precision bad" 2 "precision" net-train "$T/init.ck" --train "$T/syn.ds" --precision bf16
expect_err "train --precision bad -sim" 2 "precision" net-train "$T/init.ck" --train "$T/syn.ds" --precision fp16-sim
expect_err "train --precision tf32 on the cpu" 1 "tf32 needs --device cuda" net-train "$T/init.ck" --train "$T/syn.ds" \
  --device cpu --precision tf32 -o "$T/x.ck"
expect_err "eval --precision tf32 on ref" 1 "tf32 needs --device cuda" net-eval --device ref --precision tf32 \
  "$T/init.ck" "$T/syn.ds"
expect_err "train --lr junk" 2 "lr" net-train "$T/init.ck" --train "$T/syn.ds" --lr 0.1x
expect_err "train --milestones junk" 2 "milestones" net-train "$T/init.ck" --train "$T/syn.ds" --milestones 80,x
expect_err "train --mean without --std" 2 "std" net-train "$T/init.ck" --train "$T/syn.ds" --mean 0.5,0.5,0.5 -o "$T/x.ck"
expect_err "train two stdins" 2 "stdin" net-train - --train - -o "$T/x.ck"
expect_err "train missing dataset" 1 "nothere" net-train "$T/init.ck" --train "$T/nothere.ds" -o "$T/x.ck"
head -c 5000 "$T/init.ck" > "$T/trunc.ck"
expect_err "train truncated checkpoint" 1 "trunc" net-train "$T/trunc.ck" --train "$T/syn.ds" -o "$T/x.ck"
check "no output left after an error" test ! -e "$T/x.ck"
expect_err "train --resume on an untrained checkpoint" 1 "resume" net-train "$T/init.ck" --resume --train "$T/syn.ds" -o "$T/x.ck"

# ---- a short run: log, checkpoints per --every ---------------------------------------------
COMMON="--batch 64 --lr 0.05 --schedule cosine --augment crop-flip --normalize meanstd --threads 2"
expect "train 3 epochs" 0 net-train "$T/init.ck" --train "$T/syn.ds" --test "$T/syntest.ds" --epochs 3 $COMMON \
  --log "$T/log.tsv" -o "$T/a.ck"
check "one summary line per epoch on stderr" test "$(grep -c 'epoch [0-9]/3' "$T/err")" -eq 3
check "log header" test "$(head -n 1 "$T/log.tsv")" = "$(printf 'epoch\tstep\tlr\ttrain_loss\ttrain_acc\ttest_loss\ttest_acc\timages_per_s\tseconds')"
check "log: 3 rows of 9 columns" awk -F'\t' 'NR>1 && NF==9 {n++} END {exit !(n==3 && NR==4)}' "$T/log.tsv"
check "log: steps 5, 10, 15 (300 images, batch 64: last batch of 44)" \
  awk -F'\t' 'NR>1 {s = s $2 ","} END {exit !(s=="5,10,15,")}' "$T/log.tsv"
check "log: test accuracy filled" awk -F'\t' 'NR>1 && ($7 < 0 || $7 > 1 || $7 == "nan") {bad=1} END {exit bad}' "$T/log.tsv"
if have_pymsgpack; then
  check "--every 1 (default): 3 checkpoints" test "$(sections "$T/a.ck")" -eq 3
  net-train "$T/init.ck" --train "$T/syn.ds" --epochs 3 $COMMON --every 2 -o "$T/e2.ck" 2>/dev/null
  check "--every 2 of 3 epochs: 2 checkpoints" test "$(sections "$T/e2.ck")" -eq 2
  net-train "$T/init.ck" --train "$T/syn.ds" --epochs 3 $COMMON --every 0 -o "$T/e0.ck" 2>/dev/null
  check "--every 0: only the last" test "$(sections "$T/e0.ck")" -eq 1
  check "checkpoint records the schedule" test "$(state "$T/a.ck" schedule)" = cosine
  check "checkpoint records meanstd" test "$(state "$T/a.ck" normalize)" = meanstd
  check "checkpoint records precision fp32" test "$(state "$T/a.ck" precision)" = fp32
  check "checkpoint epoch 3 step 15" test "$(state "$T/a.ck" epoch),$(state "$T/a.ck" step)" = "3,15"
else
  t_skip "checkpoint counts" "python3-msgpack missing"
fi

# ---- --precision tf32-sim / bf16-sim (lib/ops_sim.c): reproducible, not fp32's bits ---------
differ() { test -s "$1" && test -s "$2" && ! cmp -s "$1" "$2"; }   # two real files, not the same bytes
SIMRUN="--train $T/syn.ds --epochs 1 --batch 64 --lr 0.05 --threads 2 --device cpu --every 0"
net-train "$T/init.ck" $SIMRUN -o "$T/p32.ck" 2>/dev/null
for p in tf32-sim bf16-sim; do
  expect "train --precision $p" 0 net-train "$T/init.ck" $SIMRUN --precision $p -o "$T/$p.ck"
  net-train "$T/init.ck" $SIMRUN --precision $p -o "$T/$p-2.ck" 2>/dev/null
  check "$p: the same checkpoint twice" cmp -s "$T/$p.ck" "$T/$p-2.ck"
  check "$p: not fp32's checkpoint" differ "$T/$p.ck" "$T/p32.ck"
  expect "eval --precision $p" 0 net-eval --device ref --precision $p -f tsv "$T/$p.ck" "$T/syntest.ds"
  check "eval $p: 100 images" grep -q "^images	100$" "$T/out"
done
check "tf32-sim and bf16-sim differ" differ "$T/tf32-sim.ck" "$T/bf16-sim.ck"
if have_pymsgpack; then
  check "checkpoint records precision bf16-sim" test "$(state "$T/bf16-sim.ck" precision)" = bf16-sim
fi

# ---- BN_PROFILE: the per-layer table (docs/cpu-ops.md) ----------------------------------------
for dev in cpu ref; do
  BN_PROFILE=1 BN_PEAK_GFLOPS=100 net-train "$T/init.ck" --train "$T/syn.ds" --epochs 1 --batch 64 --threads 2 \
    --device $dev -o /dev/null 2>"$T/prof.err"
  check "BN_PROFILE ($dev): header, conv rows with GFLOP/s, totals" awk '
    /^model profile: ms wall per step, mean of 5 forward \/ 5 backward passes/ {h=1}
    /^conv 3->4 32x32 k3 s1 / {c++; if ($10 !~ /^[0-9]+$/ || $12 != "-") bad=1}   # stem: no data gradient
    /^conv / {n++; if ($(NF) !~ /%$/) bad=1}
    /^all layers / {a=1} /^convolutions .*GFLOP per step/ {t=1}
    END {exit !(h && c==1 && n>=3 && a && t && !bad)}' "$T/prof.err"
done
# with both peaks, each row's time over its least (net-cost's roofline): far below 1 at peaks of
# a millionth, far above at a million times any machine's
for pk in 1e-6:below 1e9:above; do
  BN_PROFILE=1 BN_PEAK_GFLOPS=${pk%:*} BN_PEAK_GBS=${pk%:*} net-train "$T/init.ck" --train "$T/syn.ds" --epochs 1 \
    --batch 64 --threads 2 -o /dev/null 2>"$T/prof.err"
  check "BN_PROFILE x least, peaks ${pk%:*}: ${pk#*:} 1 on every row" awk -v want=${pk#*:} '
    /^(conv|bn|relu|add|gap|linear)[ +]/ {n++; r = $(NF); if (r !~ /x$/) bad=1; sub(/x$/, "", r);
      if (want == "below" ? r + 0 >= 1 : r + 0 <= 1) bad=1}
    END {exit !(n >= 8 && !bad)}' "$T/prof.err"
done
BN_PROFILE=1 net-train "$T/init.ck" --train "$T/syn.ds" --epochs 1 --batch 64 --threads 2 -o "$T/prof.ck" 2>/dev/null
net-train "$T/init.ck" --train "$T/syn.ds" --epochs 1 --batch 64 --threads 2 -o "$T/noprof.ck" 2>/dev/null
check "BN_PROFILE changes nothing in the result" cmp -s "$T/prof.ck" "$T/noprof.ck"

# ---- determinism and resume ----------------------------------------------------------------
net-train "$T/init.ck" --train "$T/syn.ds" --epochs 3 $COMMON -o "$T/b.ck" 2>/dev/null
check "same inputs, same bytes" cmp -s "$T/a.ck" "$T/b.ck"
net-train "$T/init.ck" --train "$T/syn.ds" --epochs 3 $COMMON --seed 99 -o "$T/c.ck" 2>/dev/null
check "another --seed, other bytes" sh -c "! cmp -s '$T/a.ck' '$T/c.ck'"
check "--test does not change the checkpoints" sh -c \
  "net-train '$T/init.ck' --train '$T/syn.ds' --epochs 3 $COMMON 2>/dev/null | cmp -s - '$T/a.ck'"
if have_pymsgpack; then
  expect "resume from the epoch-1 checkpoint" 0 net-train "$T/a.ck" --pick 0 --resume --train "$T/syn.ds" -o "$T/r.ck"
  last_section "$T/a.ck" "$T/a.last"
  last_section "$T/r.ck" "$T/r.last"
  check "resumed run writes epochs 2 and 3" test "$(sections "$T/r.ck")" -eq 2
  check "resumed run is bit-identical" cmp -s "$T/r.last" "$T/a.last"
  expect "resume of a finished run" 0 net-train "$T/a.ck" --resume --train "$T/syn.ds" -o "$T/r2.ck"
  check "finished run: checkpoint unchanged" cmp -s "$T/r2.ck" "$T/a.last"
  net-train "$T/a.ck" --pick 0 --resume --train "$T/syn.ds" --epochs 4 -o "$T/r4.ck" 2>/dev/null
  check "resume with more epochs continues to 4" test "$(state "$T/r4.ck" epoch)" -eq 4
else
  t_skip "resume" "python3-msgpack missing"
fi

# SIGINT mid-run: a checkpoint at the last step, exit 1, and a resume equal to the straight run
cifar-synth --count 2000 --seed 3 --pattern gradient -o "$T/big.ds" 2>/dev/null
SIG="--batch 32 --epochs 6 --lr 0.02 --schedule cosine --augment seed --normalize none --threads 2 --every 0"
net-train "$T/init.ck" --train "$T/big.ds" $SIG -o "$T/full.ck" 2>/dev/null
net-train "$T/init.ck" --train "$T/big.ds" $SIG --log "$T/int.tsv" -o "$T/int.ck" 2>"$T/int.err" &
pid=$!
i=0; while [ ! -s "$T/int.tsv" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
sleep 0.7
kill -INT $pid 2>/dev/null
wait $pid; rc=$?
if [ "$rc" -eq 0 ]; then
  t_skip "SIGINT" "the run finished before the signal (machine too fast?)"
else
  check "SIGINT: exit 1" test "$rc" -eq 1
  check "SIGINT: message" grep -q "stopped by SIGINT" "$T/int.err"
  check "SIGINT: checkpoint written" test -s "$T/int.ck"
  expect "SIGINT: resume" 0 net-train "$T/int.ck" --resume --train "$T/big.ds" -o "$T/int2.ck"
  check "SIGINT: resumed run is bit-identical to the straight one" cmp -s "$T/int2.ck" "$T/full.ck"
fi

# NaN: stop, exit 1, no checkpoint newer than the last good one (none here: no file)
expect_err "NaN loss stops" 1 "loss is NaN at epoch 1 step" net-train "$T/init.ck" --train "$T/syn.ds" --epochs 2 \
  --batch 64 --lr 1e30 --momentum 0 --schedule constant -o "$T/nan.ck"
check "NaN: no output file" test ! -e "$T/nan.ck"

# recipes
expect "recipe seed" 0 net-train "$T/init.ck" --train "$T/syn.ds" --recipe seed --epochs 1 -o "$T/seed.ck"
if have_pymsgpack; then
  check "recipe seed: no momentum, augment seed, lr 0.01" \
    test "$(state "$T/seed.ck" momentum),$(state "$T/seed.ck" augment),$(state "$T/seed.ck" lr)" = "0.0,seed,0.01"
  net-train "$T/init.ck" --train "$T/syn.ds" --epochs 1 --schedule rampup --optimizer adam -o "$T/ramp.ck" 2>/dev/null
  check "rampup: peak lr 4e-4 by default" test "$(state "$T/ramp.ck" lr)" = "0.0004"
fi

# ---- net-eval ----------------------------------------------------------------------------------
expect "eval --help" 0 net-eval --help
expect "eval --version" 0 net-eval --version
expect_err "eval one argument" 2 "CHECKPOINT and DATA" net-eval "$T/a.ck"
expect_err "eval --format bad" 2 "format" net-eval "$T/a.ck" "$T/syntest.ds" --format xml
expect_err "eval missing file" 1 "nothere" net-eval "$T/nothere.ck" "$T/syntest.ds"
expect "eval text" 0 net-eval "$T/a.ck" "$T/syntest.ds"
check "eval text: accuracy, per class, confusion" sh -c "grep -q '^accuracy' '$T/out' && grep -q 'per class' '$T/out' && grep -q confusion '$T/out'"
expect "eval tsv" 0 net-eval "$T/a.ck" "$T/syntest.ds" --format tsv
acc=$(awk -F'\t' '$1=="accuracy"{print $2}' "$T/out")
logacc=$(awk -F'\t' 'END{print $7}' "$T/log.tsv")
check "eval accuracy equals the log's last test_acc ($acc, $logacc)" test "$acc" = "$logacc"
check "eval tsv: 10 confusion rows summing to 100" \
  awk -F'\t' '$1 ~ /^confusion\./ {r++; for (i=2;i<=NF;i++) s+=$i} END {exit !(r==10 && s==100)}' "$T/out"
expect "eval json" 0 net-eval "$T/a.ck" "$T/syntest.ds" --format json --pick 1
check "eval json parses" "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["images"]==100 and len(d["confusion"])==10 and d["checkpoint"]["epoch"]==2' "$T/out"
expect "eval an untrained checkpoint" 0 net-eval "$T/init.ck" "$T/syntest.ds" --format tsv
check "eval from stdin" sh -c "net-eval - '$T/syntest.ds' --format tsv < '$T/a.ck' | grep -q '^accuracy'"

# ---- real data: ResNet-20, all parameters vs BN only ------------------------------------------
# 3 epochs of the sample's 7,044 training images (168 steps each) with the fast CPU ops: about
# 50 s (all) + 35 s (BN only) on 2 cores. Published-style anchors need far longer runs; here
# both must beat chance clearly and training everything must beat training BN alone.
if ! have_sample; then
  t_skip "real data" "no CIFAR-10 sample at $SAMPLE"
elif [ -n "${BN_SANITIZED:-}" ]; then
  t_skip "real data" "sanitizer build (BN_SANITIZED): minutes of training, no new code path"
elif [ ! -x "$BIN/cifar-fetch" ] || [ ! -x "$BIN/net-freeze" ]; then
  t_skip "real data" "cifar-fetch or net-freeze not built"
else
  cifar-fetch --url "$SAMPLE" --allow-unofficial --split train -o "$T/train.ds" 2>/dev/null
  cifar-fetch --url "$SAMPLE" --allow-unofficial --split test -o "$T/test.ds" 2>/dev/null
  net-init --depth 20 --seed 1 -o "$T/r20.ck" 2>/dev/null
  REAL="--epochs 3 --batch 128 --lr 0.1 --momentum 0.9 --wd 1e-4 --schedule cosine --augment none --normalize meanstd --threads 2 --every 0"
  net-freeze --train all "$T/r20.ck" 2>/dev/null | net-train --train "$T/train.ds" $REAL -o "$T/all.ck" 2>"$T/all.err"
  net-freeze --train bn "$T/r20.ck" 2>/dev/null | net-train --train "$T/train.ds" $REAL -o "$T/bn.ck" 2>"$T/bn.err"
  a=$(net-eval "$T/all.ck" "$T/test.ds" --format tsv 2>/dev/null | awk -F'\t' '$1=="accuracy"{print $2}')
  b=$(net-eval "$T/bn.ck" "$T/test.ds" --format tsv 2>/dev/null | awk -F'\t' '$1=="accuracy"{print $2}')
  echo "# real data, 3 epochs: all parameters ${a:-?}, BN only ${b:-?} (test accuracy)"
  check "real data: all parameters beat chance (${a:-?} > 0.25)" awk -v a="${a:-0}" 'BEGIN{exit !(a > 0.25)}'
  check "real data: BN only beats chance (${b:-?} > 0.2)" awk -v b="${b:-0}" 'BEGIN{exit !(b > 0.2)}'
  check "real data: all parameters beat BN only" awk -v a="${a:-0}" -v b="${b:-1}" 'BEGIN{exit !(a > b)}'
fi
# A resume with another optimizer starts from fresh optimizer state, never another's buffers.
net-init --arch resnet --depth 8 --width 4 --seed 1 -o "$T/o8.ckpt" 2>/dev/null
cifar-synth --count 64 -o "$T/o64.ds"
net-train "$T/o8.ckpt" --train "$T/o64.ds" --epochs 1 --batch 32 --momentum 0.9 -o "$T/oe1.ckpt" 2>/dev/null
net-train "$T/oe1.ckpt" --resume --train "$T/o64.ds" --epochs 2 --batch 32 --momentum 0 -o "$T/oe2.ckpt" 2>/dev/null
n=$(net-inspect --last --format tsv "$T/oe2.ckpt" | awk -F'\t' '$8=="opt"' | wc -l)
[ "$n" -eq 0 ] && t_ok resume_without_momentum_drops_state || t_fail resume_without_momentum_drops_state "$n opt tensors left"
net-train "$T/oe1.ckpt" --resume --train "$T/o64.ds" --epochs 2 --batch 32 --optimizer adam --lr 0.001 -o "$T/oe3.ckpt" 2>/dev/null
net-inspect --last "$T/oe3.ckpt" | grep -q 'opt_state=adam' &&
  [ "$(net-inspect --last --format tsv --tensors 'opt.v/*' "$T/oe3.ckpt" | tail -n +2 | wc -l)" -gt 0 ] &&
  t_ok resume_switching_optimizer_records_state || t_fail resume_switching_optimizer_records_state "no Adam state recorded"
t_done
