#!/bin/sh
# The experiment pipelines (pipelines/*.mk) end to end in a tiny configuration: every target
# runs (1 epoch, 64 training / 32 test images of a synthetic archive, small networks), and its
# outputs exist and parse: PNGs of the right size, metrics and evaluation TSVs with their
# columns and rows, summary.md with one table row per variant. Also: make reruns nothing once
# done, RUN prefixes every training command, -j2 works, an interrupted run resumes to the same
# checkpoint as an uninterrupted one, and net-ablate / net-lr behave.
. "$(dirname "$0")/lib.sh"
cd "$TOP" || exit 1

if ! command -v gnuplot >/dev/null 2>&1; then
  t_skip pipelines "gnuplot not installed (make deps)"; t_done; exit
fi
"$PY" "$TOP/tests/mkcifar.py" archive --records 80 -o "$T/c.tar.gz" || { t_fail archive "mkcifar failed"; t_done; exit; }

# A RUN wrapper that records every training command it runs, then runs it.
cat > "$T/wrap.sh" <<EOF
#!/bin/sh
echo "\$*" >> "$T/wrapped.txt"
exec "\$@"
EOF
chmod +x "$T/wrap.sh"

TINY="RUNS=$T/runs DATA=$T/c.tar.gz EPOCHS=1 NTRAIN=64 NTEST=32 BATCH=32 EVERY=1 DEVICE=cpu THREADS=1 SEED=3"
TINY="$TINY SEED_ARCH=--arch\\ bottleneck\\ --depth\\ 11 BATCHES=16\\ 32 DEPTHS=8 GAMMA_DEPTH=8 WIDTHS=4\\ 8"
TINY="$TINY WIDTH_DEPTH=8 BASE_DEPTH=8 RUN=$T/wrap.sh"
mk() { eval "make --no-print-directory $TINY \"\$@\""; }
R=$T/runs

# png_size FILE: "W H" from the IHDR chunk, nothing when not a PNG
png_size() {
  [ "$(od -An -tx1 -N8 "$1" 2>/dev/null | tr -d ' \n')" = 89504e470d0a1a0a ] || return 1
  od -An -tu1 -j16 -N8 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8}'
}
png_is() {  # NAME FILE W H
  s=$(png_size "$2")
  if [ "$s" = "$3 $4" ]; then t_ok "$1"; else t_fail "$1" "$2: size '${s:-not a PNG}', wanted $3 $4"; fi
}
# rows NAME FILE N: the file has N lines
rows() {
  n=$(wc -l < "$2" 2>/dev/null || echo missing)
  if [ "$n" = "$3" ]; then t_ok "$1"; else t_fail "$1" "$2 has $n lines, wanted $3"; fi
}
# target_ok TARGET VARIANTS...: the standard outputs of a target
target_ok() {
  tg=$1; shift; nv=$#
  d=$R/$tg
  n=$(grep -c '^| ' "$d/summary.md" 2>/dev/null || echo 0)
  if [ "$n" = $((nv + 1)) ] && grep -q '^|---|' "$d/summary.md"; then t_ok "$tg.summary_table"; else
    t_fail "$tg.summary_table" "$n table lines, wanted $((nv + 1))"; fi
  [ "$(head -n 1 "$d/bars.tsv" 2>/dev/null)" = "$(printf 'variant\tours\tpublished')" ] &&
    t_ok "$tg.bars_header" || t_fail "$tg.bars_header" "$(head -n 1 "$d/bars.tsv" 2>&1)"
  rows "$tg.bars_rows" "$d/bars.tsv" $((nv + 1))
  # curves.png: 1200 wide, 480 high plus legend rows (22 px per row of 3) beyond 2 variants
  h=480; [ "$nv" -gt 2 ] && h=$((480 + 22 * ((nv + 2) / 3)))
  png_is "$tg.curves_png" "$d/curves.png" 1200 $h
  png_is "$tg.bars_png" "$d/bars.png" 1000 520
  bad=""
  for v in "$@"; do
    [ "$(head -n 1 "$d/$v.tsv" | awk -F'\t' '{print NF}')" = 9 ] || bad="$bad $v.tsv-columns"
    [ "$(wc -l < "$d/$v.tsv")" = 2 ] || bad="$bad $v.tsv-rows"
    a=$(awk -F'\t' '$1=="accuracy"{print $2}' "$d/$v.eval.tsv")
    awk -v a="$a" 'BEGIN{exit !(a != "" && a >= 0 && a <= 1)}' || bad="$bad $v.eval-accuracy"
    [ "$(awk -F'\t' '$1=="images"{print $2}' "$d/$v.eval.tsv")" = 32 ] || bad="$bad $v.eval-images"
    [ -e "$d/$v.ckpt.part" ] && bad="$bad $v.part-left"
    net-inspect --verify "$d/$v.ckpt" >/dev/null 2>&1 || bad="$bad $v.ckpt-verify"
  done
  [ -z "$bad" ] && t_ok "$tg.runs" || t_fail "$tg.runs" "$bad"
}

SEEDV="sgd cosine linear-cosine cosine-restarts"
LRV="all-adam all-adam-rampup bnonly-adam bnonly-adam-rampup bnonly-sgd bnonly-cosine bnonly-linear-cosine bnonly-cosine-restarts bnonly-cosine-run"

# --- every seed target --------------------------------------------------------------------
for tg in subset-all subset-bnonly full-all full-bnonly; do
  expect "$tg.make" 0 mk "$tg"
  target_ok "$tg" $SEEDV
done
grep -q 'published' "$R/subset-bnonly/summary.md" && grep -q '20.0%' "$R/subset-bnonly/summary.md" &&
  t_ok subset-bnonly.published_quoted || t_fail subset-bnonly.published_quoted "no 20.0% in summary.md"
grep -q 'first 64' /dev/null; [ "$(net-inspect "$R/data/train-first64.ds" | awk '/^count:/{print $2}')" = 64 ] &&
  t_ok subset.first_n_images || t_fail subset.first_n_images "train-first64.ds does not hold 64 images"
expect full-batch1024.make 0 mk full-batch1024
target_ok full-batch1024 all-sgd bnonly-sgd bnonly-cosine-restarts
expect lr-schedules.make 0 mk lr-schedules
target_ok lr-schedules $LRV
png_is lr-schedules.lr_png "$R/lr-schedules/lr.png" 1100 560
rows lr-schedules.lr_rows "$R/lr-schedules/bnonly-cosine.lr.tsv" 3      # header + 2 steps (64 images / 32)
expect frozen.make 0 mk frozen
target_ok frozen none
grep -q 'none | 0 of ' "$R/frozen/summary.md" && t_ok frozen.nothing_trainable ||
  t_fail frozen.nothing_trainable "$(grep '^| none' "$R/frozen/summary.md")"
expect batch-sizes.make 0 mk batch-sizes
target_ok batch-sizes b16 b32
grep -q -- '--batch 16' "$R/batch-sizes/b16.settings" && t_ok batch-sizes.batch_used || t_fail batch-sizes.batch_used "no --batch 16"
expect viz.make 0 mk viz
for f in all-stem.conv all-s1.b0.conv3 bnonly-stem.conv bnonly-s1.b0.conv3; do
  png_is "viz.$f" "$R/viz/$f.png" 1000 1000
done
expect viz2.make 0 mk viz2
for f in all bnonly; do
  w=$(png_size "$R/viz2/$f.png" | cut -d' ' -f1)
  [ "$w" = 1000 ] && t_ok "viz2.$f" || t_fail "viz2.$f" "width '${w:-not a PNG}', wanted 1000"
done

# --- precision: fp32 / tf32-sim / bf16-sim (on the cpu whatever DEVICE says) ----------------
expect precision.make 0 mk precision
target_ok precision-s3 all-fp32 all-tf32-sim all-bf16-sim bnonly-fp32 bnonly-tf32-sim bnonly-bf16-sim
rows precision.tsv_rows "$R/precision-s3/precision.tsv" 7
grep -q -- '--precision bf16-sim' "$R/precision-s3/bnonly-bf16-sim.settings" && t_ok precision.settings ||
  t_fail precision.settings "no --precision bf16-sim in bnonly-bf16-sim.settings"
cmp -s "$R/precision-s3/all-fp32.ckpt" "$R/precision-s3/all-bf16-sim.ckpt" &&
  t_fail precision.differs "bf16-sim trained the same bits as fp32" || t_ok precision.differs

# --- the paper's targets ------------------------------------------------------------------
expect paper-depths.make 0 mk paper-depths
target_ok paper-depths d8-all d8-bnonly
png_is paper-depths.depth_png "$R/paper-depths/depth.png" 900 560
rows paper-depths.depth_rows "$R/paper-depths/depth.tsv" 2
expect paper-widths.make 0 mk paper-widths
target_ok paper-widths w4-all w4-bnonly w8-all w8-bnonly
rows paper-widths.width_rows "$R/paper-widths/width.tsv" 3
expect paper-baselines.make_j2 0 mk -j2 paper-baselines
target_ok paper-baselines all bnonly output bn+output random2 none
grep -q '^| bnonly | 672 of ' "$R/paper-baselines/summary.md" && grep -q '^| random2 | 672 of ' "$R/paper-baselines/summary.md" &&
  t_ok paper-baselines.random2_as_many_as_bn || t_fail paper-baselines.random2_as_many_as_bn "$(grep '^| \(bnonly\|random2\)' "$R/paper-baselines/summary.md")"
expect paper-gamma.make 0 mk paper-gamma
G=$R/paper-gamma
[ "$(head -n 1 "$G/bnonly.fractions.tsv")" = "$(printf 'layer\tchannels\tbelow_0.01\tbelow_0.05\tbelow_0.1')" ] &&
  t_ok paper-gamma.fractions_header || t_fail paper-gamma.fractions_header "$(head -n 1 "$G/bnonly.fractions.tsv")"
rows paper-gamma.fractions_rows "$G/bnonly.fractions.tsv" 11   # header + 9 BN layers of ResNet-8 + all
rows paper-gamma.ablate_rows "$G/bnonly.ablate.tsv" 5
n=$(grep -c '^| \(bnonly\|all\) |' "$G/summary.md"); [ "$n" = 8 ] && t_ok paper-gamma.summary_rows || t_fail paper-gamma.summary_rows "$n rows"
png_is paper-gamma.fractions_png "$G/fractions.png" 1200 560
png_is paper-gamma.gamma_png "$G/gamma.png" 1000 700

# --- make manners ---------------------------------------------------------------------------
mk -n paper-depths paper-gamma subset-bnonly lr-schedules viz viz2 precision > "$T/dry0" 2>&1
n=$(grep -c 'train-run\|net-eval\|net-init\|net-freeze\|gnuplot\|summary.sh\|filter-viz' "$T/dry0")
[ "$n" = 0 ] && t_ok make_nothing_to_redo || t_fail make_nothing_to_redo "$n commands planned: $(head -c 300 "$T/dry0")"
# 4+4+4+4 + 3 + 9 + 1 + 2 seed runs, 6 precision runs, 2 + 4 + 6 paper runs, each through RUN once
n=$(grep -c 'train-run.sh' "$T/wrapped.txt" 2>/dev/null || echo 0)
[ "$n" = 49 ] && t_ok run_prefix_every_training || t_fail run_prefix_every_training "$n wrapped commands, wanted 49"
grep -v train-run.sh "$T/wrapped.txt" > "$T/notrain" 2>/dev/null
[ ! -s "$T/notrain" ] && t_ok run_prefix_only_training || t_fail run_prefix_only_training "$(head -n 2 "$T/notrain")"
touch pipelines/summary.sh
mk -n paper-depths > "$T/dry" 2>&1
grep -q 'summary.sh' "$T/dry" && ! grep -q 'train-run\|net-eval' "$T/dry" && t_ok make_reruns_only_what_changed ||
  t_fail make_reruns_only_what_changed "$(grep -c 'train-run\|net-eval' "$T/dry") runs planned after touching summary.sh"
expect_err bad_data 2 'cifar-fetch' mk RUNS="$T/runs2" DATA="$T/nonexistent.tar.gz" frozen

# --- train-run.sh: an interrupted run resumes to the checkpoint of an uninterrupted one ------
cifar-synth --count 2048 --seed 2 -o "$T/s.ds" 2>/dev/null
net-init --depth 8 --width 4 --seed 5 -o "$T/i.ckpt" 2>/dev/null
TR="--train $T/s.ds --epochs 4 --batch 64 --lr 0.05 --augment crop-flip --normalize none --device cpu --threads 1"
pipelines/train-run.sh "$T/ref.ckpt" "$T/i.ckpt" $TR 2>/dev/null
pipelines/train-run.sh "$T/int.ckpt" "$T/i.ckpt" $TR 2>"$T/int.err" &
pid=$!
i=0; while [ $i -lt 300 ] && [ "$(cat "$T/int.ckpt.part.tsv" 2>/dev/null | wc -l)" -lt 2 ]; do sleep 0.1; i=$((i+1)); done
pkill -INT -f "net-train $T/i.ckpt" ; wait $pid; rc=$?
if [ "$rc" -ne 0 ] && [ -s "$T/int.ckpt.part" ] && [ ! -e "$T/int.ckpt" ]; then t_ok resume.interrupted_leaves_part; else
  t_fail resume.interrupted_leaves_part "status $rc, part $(ls "$T"/int.ckpt* 2>&1 | tr '\n' ' ')"; fi
pipelines/train-run.sh "$T/int.ckpt" "$T/i.ckpt" $TR 2>"$T/res.err"; rc=$?
grep -q 'resuming' "$T/res.err" && t_ok resume.resumed || t_fail resume.resumed "status $rc: $(head -c 300 "$T/res.err")"
net-freeze "$T/ref.ckpt" 2>/dev/null | md5sum > "$T/a.md5"; net-freeze "$T/int.ckpt" 2>/dev/null | md5sum > "$T/b.md5"
cmp -s "$T/a.md5" "$T/b.md5" && t_ok resume.bit_identical || t_fail resume.bit_identical "final checkpoints differ"
rows resume.log_rows "$T/int.tsv" 5
cut -f1-3 "$T/int.tsv" > "$T/x1"; cut -f1-3 "$T/ref.tsv" > "$T/x2"
cmp -s "$T/x1" "$T/x2" && t_ok resume.log_epochs_once || t_fail resume.log_epochs_once "$(paste "$T/x1" "$T/x2" | head -5)"

# A big checkpoint (ResNet-110: ~40 KB of net-inspect output) once lost the race between
# net-inspect and an awk that stopped reading early: SIGPIPE + pipefail ended train-run.sh
# silently in about half of the resumes. Every one of 8 resumes must now say so and finish.
cifar-synth --count 64 --seed 2 -o "$T/s64.ds" 2>/dev/null
net-init --depth 110 --width 4 --seed 5 -o "$T/big.ckpt" 2>/dev/null
BT="--train $T/s64.ds --batch 64 --device cpu --threads 1"
net-train "$T/big.ckpt" $BT --epochs 1 -o "$T/big1.ckpt" 2>/dev/null
n=0
for i in 1 2 3 4 5 6 7 8; do
  rm -f "$T/b.ckpt" "$T/b.tsv"; cp "$T/big1.ckpt" "$T/b.ckpt.part"
  if pipelines/train-run.sh "$T/b.ckpt" "$T/big.ckpt" $BT --epochs 2 2>"$T/b.err" && grep -q resuming "$T/b.err" &&
     [ -s "$T/b.ckpt" ]; then n=$((n+1)); fi
done
[ $n -eq 8 ] && t_ok resume.big_checkpoint || t_fail resume.big_checkpoint "$n of 8 resumes finished; last: $(head -c 300 "$T/b.err")"

# --- net-ablate and net-lr -----------------------------------------------------------------
C=$R/paper-depths/d8-bnonly.ckpt
expect ablate.help 0 net-ablate --help
expect ablate.version 0 net-ablate --version
expect_err ablate.neither 2 'exactly one' net-ablate "$C"
expect_err ablate.both 2 'exactly one' net-ablate "$C" --report 0.1 --zero-below 0.1
expect_err ablate.empty_threshold 2 'empty threshold' net-ablate "$C" --report 0.1,,0.2
expect_err ablate.negative 2 'zero-below' net-ablate "$C" --zero-below -1
expect_err ablate.not_a_checkpoint 1 's.ds' net-ablate "$T/s.ds" --report 0.1
printf 'garbage' > "$T/g.ckpt"
expect_err ablate.garbage 1 'g.ckpt' net-ablate "$T/g.ckpt" --report 0.1
# after zeroing |gamma| < 0.3, the fraction below 0.001 is the fraction that was below 0.3
before=$(net-ablate "$C" --report 0.3 | awk -F'\t' '$1=="all"{print $3}')
after=$(net-ablate "$C" --zero-below 0.3 2>"$T/z.err" | net-ablate - --report 0.001 | awk -F'\t' '$1=="all"{print $3}')
[ -n "$before" ] && [ "$before" = "$after" ] && t_ok ablate.zeroes_exactly_those || t_fail ablate.zeroes_exactly_those "$before vs $after"
grep -q 'gammas below 0.3 set to zero' "$T/z.err" && t_ok ablate.says_how_many || t_fail ablate.says_how_many "$(cat "$T/z.err")"
net-ablate "$C" --zero-below 0.3 --beta 2>/dev/null | net-inspect --format tsv - > "$T/zb.tsv"
[ -s "$T/zb.tsv" ] && t_ok ablate.beta_stream_valid || t_fail ablate.beta_stream_valid "empty"
expect ablate.output_file_valid 0 sh -c "net-ablate '$C' --zero-below 0.1 -o '$T/z.ckpt' && net-inspect --verify '$T/z.ckpt'"
expect lr.help 0 net-lr --help
expect_err lr.untrained 1 'net-train' net-lr "$T/i.ckpt"
expect_err lr.every0 2 'every' net-lr "$T/ref.ckpt" --every 0
# the rate of the last step of each epoch is the one net-train logged for that epoch
net-lr "$T/ref.ckpt" > "$T/lr.tsv"
rows lr.steps "$T/lr.tsv" 129    # 4 epochs x 32 steps + header
awk -F'\t' 'NR>1{last[$2+1]=$3} END{for (e in last) print e "\t" last[e]}' "$T/lr.tsv" | sort -n > "$T/lr_last"
awk -F'\t' 'NR>1{print $1 "\t" $3}' "$T/ref.tsv" > "$T/lr_log"
awk -F'\t' 'NR==FNR{a[$1]=$2; next} {d=a[$1]-$2; if (d<0) d=-d; if (d > 1e-6*($2<0?-$2:$2) + 1e-12) bad=1} END{exit bad}' "$T/lr_last" "$T/lr_log" &&
  [ "$(wc -l < "$T/lr_log")" = 4 ] && t_ok lr.matches_training_log || t_fail lr.matches_training_log "$(paste "$T/lr_last" "$T/lr_log")"

# --- filter-viz maps of a meanstd-trained checkpoint use its recorded mean/std (no warning) ---
filter-viz maps "$R/paper-depths/d8-all.ckpt" "$R/data/test-first32.ds" --layer stem.conv -o "$T/m.png" 2>"$T/m.err"
[ ! -s "$T/m.err" ] && t_ok viz.maps_meanstd_quiet || t_fail viz.maps_meanstd_quiet "$(cat "$T/m.err")"
t_done
