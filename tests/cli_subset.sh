#!/bin/sh
# cifar-subset: selections (first, skip, per-class, classes, relabel, holdout), determinism,
# input order, pipes, bad input and options, bounded memory, and the real sample.
# Synthetic inputs come from tests/mkds.py (written from FORMAT.md with Python's msgpack);
# outputs are read back by mkds.py's own reader, which checks trailer and CRC-32 itself.
. "$(dirname "$0")/lib.sh"
MK="$TOP/tests/mkds.py"

if ! have_pymsgpack; then
  t_skip cli_subset "python3-msgpack is not installed (scripts/deps.sh installs it)"
  t_done; exit
fi

expect help 0 cifar-subset --help
grep -q -- '--per-class' "$T/out" && t_ok help_text || t_fail help_text "no --per-class in help"
expect version 0 cifar-subset --version
grep -q 'cifar-subset' "$T/out" && t_ok version_text || t_fail version_text "$(cat "$T/out")"

# ids FILE: "count N header H", "classes ...", then "INDEX LABEL" per record (checked by mkds.py)
ids() { "$PY" "$MK" ids "$1"; }
# records FILE: only the "INDEX LABEL" lines
records() { ids "$1" | tail -n +3; }
# ascending FILE: the record indices strictly increase (input order kept)
ascending() { records "$1" | awk 'NR > 1 && $1 <= p { bad = 1 } { p = $1 } END { exit bad }'; }
# per_label FILE: "LABEL:COUNT ..." sorted by label
per_label() { records "$1" | awk '{ n[$2]++ } END { for (l in n) print l ":" n[l] }' | sort -n | tr '\n' ' '; }

# 100 records, labels cycling 0..9 (record i has label i % 10)
"$PY" "$MK" dataset --count 100 --chunk 7 -o "$T/a.ds"
check mkds_reads_back sh -c "'$PY' '$MK' ids '$T/a.ds' | head -1 | grep -qx 'count 100 header 100'"

# --first / --skip
expect first5 0 cifar-subset "$T/a.ds" --first 5 -o "$T/f5.ds"
got=$(records "$T/f5.ds" | awk '{printf "%s/%s ", $1, $2}')
[ "$got" = "0/0 1/1 2/2 3/3 4/4 " ] && t_ok first5_records || t_fail first5_records "$got"
ids "$T/f5.ds" | head -1 | grep -qx 'count 5 header 5' && t_ok first5_header_count || t_fail first5_header_count "$(ids "$T/f5.ds" | head -1)"
grep -q '100 records in, 5 out' "$T/err" && t_ok first5_summary || t_fail first5_summary "$(cat "$T/err")"
cifar-subset "$T/a.ds" --skip 3 --first 10 -q -o "$T/s3f10.ds"
got=$(records "$T/s3f10.ds" | awk '{printf "%s ", $1}')
[ "$got" = "3 4 5 6 7 8 9 10 11 12 " ] && t_ok skip_then_first || t_fail skip_then_first "$got"
cifar-subset "$T/a.ds" --skip 95 -q -o "$T/s95.ds"
got=$(records "$T/s95.ds" | awk '{printf "%s ", $1}')
[ "$got" = "95 96 97 98 99 " ] && t_ok skip_rest || t_fail skip_rest "$got"
cifar-subset "$T/a.ds" --first 1000 -q -o "$T/f1000.ds"
[ "$(records "$T/f1000.ds" | wc -l)" -eq 100 ] && t_ok first_more_than_all || t_fail first_more_than_all "$(records "$T/f1000.ds" | wc -l)"
expect quiet 0 cifar-subset "$T/a.ds" --first 2 -q -o "$T/q.ds"
[ ! -s "$T/err" ] && t_ok quiet_silent || t_fail quiet_silent "$(cat "$T/err")"

# --per-class: balance, input order, determinism
expect per_class3 0 cifar-subset "$T/a.ds" --per-class 3 --seed 4 -o "$T/p3.ds"
got=$(per_label "$T/p3.ds")
[ "$got" = "0:3 1:3 2:3 3:3 4:3 5:3 6:3 7:3 8:3 9:3 " ] && t_ok per_class_balance || t_fail per_class_balance "$got"
check per_class_input_order ascending "$T/p3.ds"
ids "$T/p3.ds" | head -1 | grep -qx 'count 30 header 30' && t_ok per_class_header_count || t_fail per_class_header_count "$(ids "$T/p3.ds" | head -1)"
records "$T/p3.ds" | awk '$1 % 10 != $2 { exit 1 }' && t_ok per_class_labels_match || t_fail per_class_labels_match "label differs from input"
cifar-subset "$T/a.ds" --per-class 3 --seed 4 -q > "$T/p3b.ds"
check same_seed_same_bytes cmp "$T/p3.ds" "$T/p3b.ds"
cifar-subset "$T/a.ds" --per-class 3 --seed 5 -q > "$T/p3c.ds"
if [ "$(records "$T/p3.ds")" = "$(records "$T/p3c.ds")" ]; then t_fail other_seed_other_selection "same records"
else t_ok other_seed_other_selection; fi
# not simply the first 3 of each class
if [ "$(records "$T/p3.ds" | awk '{printf "%s ", $1}')" = "$(seq 0 29 | tr '\n' ' ')" ]; then
  t_fail per_class_random "took the first 30"; else t_ok per_class_random; fi
# a class with fewer than K records: all taken, a warning
"$PY" "$MK" dataset --count 100 --classes a,b,c --labels 0,0,0,1 -o "$T/imb.ds"
expect_err per_class_short_warns 0 'class c has 0 records.*took all' cifar-subset "$T/imb.ds" --per-class 30 -o "$T/imb30.ds"
grep -q 'class b has 25 records' "$T/err" && t_ok per_class_short_b || t_fail per_class_short_b "$(cat "$T/err")"
got=$(per_label "$T/imb30.ds")
[ "$got" = "0:30 1:25 " ] && t_ok per_class_short_counts || t_fail per_class_short_counts "$got"

# --classes by name and by index, --relabel
expect classes_names 0 cifar-subset "$T/a.ds" --classes cat,dog -o "$T/cd.ds"
got=$(per_label "$T/cd.ds")
[ "$got" = "3:10 5:10 " ] && t_ok classes_names_labels || t_fail classes_names_labels "$got"
ids "$T/cd.ds" | head -2 | tr '\n' ' ' | grep -q 'count 20 header nil classes airplane,automobile,bird,cat' \
  && t_ok classes_header_nil_names_kept || t_fail classes_header_nil_names_kept "$(ids "$T/cd.ds" | head -2)"
cifar-subset "$T/a.ds" --classes 5,3 -q -o "$T/cd2.ds"
[ "$(records "$T/cd.ds")" = "$(records "$T/cd2.ds")" ] && t_ok classes_by_index || t_fail classes_by_index "differs from by name"
expect relabel 0 cifar-subset "$T/a.ds" --classes dog,cat --relabel -o "$T/rl.ds"
ids "$T/rl.ds" | sed -n 2p | grep -qx 'classes dog,cat' && t_ok relabel_names || t_fail relabel_names "$(ids "$T/rl.ds" | sed -n 2p)"
records "$T/rl.ds" | awk '($1 % 10 == 5 && $2 != 0) || ($1 % 10 == 3 && $2 != 1) || ($1 % 10 != 3 && $1 % 10 != 5) { bad = 1 } END { exit bad }' \
  && t_ok relabel_labels || t_fail relabel_labels "$(records "$T/rl.ds" | head -4 | tr '\n' ' ')"
check relabel_input_order ascending "$T/rl.ds"
cifar-subset "$T/a.ds" --classes cat --relabel --per-class 4 --seed 2 -q -o "$T/rlp.ds"
got=$(per_label "$T/rlp.ds")
[ "$got" = "0:4 " ] && t_ok classes_then_per_class || t_fail classes_then_per_class "$got"

# --holdout: the last N or N at random; both outputs complete, disjoint, in input order
expect holdout_last 0 cifar-subset "$T/a.ds" --holdout 10 --holdout-out "$T/h.ds" -o "$T/m.ds"
got="$(records "$T/m.ds" | wc -l) $(records "$T/h.ds" | wc -l) $(records "$T/h.ds" | head -1 | cut -d' ' -f1)"
[ "$got" = "90 10 90" ] && t_ok holdout_last_counts || t_fail holdout_last_counts "$got"
ids "$T/h.ds" | head -1 | grep -qx 'count 10 header 10' && t_ok holdout_header_count || t_fail holdout_header_count "$(ids "$T/h.ds" | head -1)"
grep -q '90 out.*10 held out' "$T/err" && t_ok holdout_summary || t_fail holdout_summary "$(cat "$T/err")"
expect holdout_random 0 cifar-subset "$T/a.ds" --holdout 10 --holdout-random --seed 3 --holdout-out "$T/hr.ds" -o "$T/mr.ds"
{ records "$T/mr.ds"; records "$T/hr.ds"; } | cut -d' ' -f1 | sort -n > "$T/union"
seq 0 99 | cmp -s - "$T/union" && t_ok holdout_random_partition || t_fail holdout_random_partition "not a partition of 0..99"
check holdout_random_order_main ascending "$T/mr.ds"
check holdout_random_order_held ascending "$T/hr.ds"
[ "$(records "$T/hr.ds" | head -1 | cut -d' ' -f1)" != 90 ] && t_ok holdout_random_not_last || t_fail holdout_random_not_last "took the last 10"
cifar-subset "$T/a.ds" --holdout 10 --holdout-random --seed 3 --holdout-out "$T/hr2.ds" -q -o "$T/mr2.ds"
cmp -s "$T/hr.ds" "$T/hr2.ds" && cmp -s "$T/mr.ds" "$T/mr2.ds" && t_ok holdout_random_same_seed || t_fail holdout_random_same_seed "bytes differ"
# a selection of unknown size (class filter, nil count) goes through the spool
"$PY" "$MK" dataset --count 100 --count-nil -o "$T/nil.ds"
expect holdout_unknown_size 0 cifar-subset "$T/nil.ds" --classes cat,dog --holdout 5 --holdout-random --seed 1 --holdout-out "$T/hn.ds" -o "$T/mn.ds"
got="$(ids "$T/mn.ds" | head -1) / $(ids "$T/hn.ds" | head -1)"
[ "$got" = "count 15 header 15 / count 5 header 5" ] && t_ok holdout_unknown_size_counts || t_fail holdout_unknown_size_counts "$got"
per_label "$T/mn.ds" | grep -qE '^3:[0-9]+ 5:[0-9]+ $' && t_ok holdout_unknown_size_classes || t_fail holdout_unknown_size_classes "$(per_label "$T/mn.ds")"
cifar-subset "$T/a.ds" --per-class 5 --seed 9 --holdout 20 --holdout-out "$T/hp.ds" -q -o "$T/mp.ds"
got="$(records "$T/mp.ds" | wc -l) $(records "$T/hp.ds" | wc -l)"
[ "$got" = "30 20" ] && t_ok per_class_then_holdout || t_fail per_class_then_holdout "$got"
expect_err holdout_too_big 1 'selection holds only 5' cifar-subset "$T/a.ds" --first 5 --holdout 6 --holdout-out "$T/hb.ds" -o "$T/mb.ds"
[ ! -e "$T/hb.ds" ] && [ ! -e "$T/mb.ds" ] && [ -z "$(ls "$T" | grep tmp)" ] && t_ok holdout_too_big_no_files || t_fail holdout_too_big_no_files "$(ls "$T")"

# pipes; net-inspect reads what cifar-subset writes
got=$(cat "$T/a.ds" | cifar-subset - --first 5 -q | net-inspect - | grep '^records:')
case "$got" in "records:  5 "*) t_ok pipe_to_inspect;; *) t_fail pipe_to_inspect "$got";; esac
got=$(cifar-subset -q --per-class 2 < "$T/a.ds" | net-inspect --format tsv - | awk -F'\t' 'NR > 1 { s = s $3 " " } END { print s }')
[ "$got" = "2 2 2 2 2 2 2 2 2 2 " ] && t_ok pipe_histogram || t_fail pipe_histogram "$got"
# Python's msgpack reads our output with no code of ours
"$PY" -c '
import sys, zlib, msgpack
objs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
h, recs, t = objs[0], objs[1:-1], objs[-1]
crc = 0
for r in recs:
    crc = zlib.crc32(r["labels"], crc); crc = zlib.crc32(r["pixels"], crc)
n = sum(r["n"] for r in recs)
assert h["kind"] == "dataset" and h["count"] is None and t["end"] == "dataset"
assert t["records"] == n == 20 and t["crc32"] == crc
assert "cifar-subset --classes cat,dog" in h["source"], h["source"]
' "$T/cd.ds" 2>"$T/pyerr" && t_ok python_reads_output || t_fail python_reads_output "$(tail -2 "$T/pyerr")"

# bad input: exit 1, a message with the byte offset, no output file left
printf 'this is not a dataset stream' > "$T/garbage"
head -c 20000 "$T/a.ds" > "$T/trunc.ds"
: > "$T/empty"
"$PY" "$MK" checkpoint -o "$T/c.ck"
expect_err bad_garbage 1 'garbage: at byte 0' cifar-subset "$T/garbage" -o "$T/g.ds"
[ ! -e "$T/g.ds" ] && t_ok bad_garbage_no_file || t_fail bad_garbage_no_file "left behind"
expect_err bad_truncated 1 'trunc.ds: at byte [0-9]+: stream truncated' cifar-subset "$T/trunc.ds" --first 2 -o "$T/g.ds"
[ ! -e "$T/g.ds" ] && t_ok bad_truncated_no_file || t_fail bad_truncated_no_file "left behind"
expect_err bad_truncated_holdout 1 'truncated' cifar-subset "$T/trunc.ds" --holdout 1 --holdout-out "$T/gh.ds" -o "$T/g.ds"
[ ! -e "$T/g.ds" ] && [ ! -e "$T/gh.ds" ] && t_ok bad_truncated_no_files || t_fail bad_truncated_no_files "left behind"
expect_err bad_empty 1 'empty input' cifar-subset "$T/empty" -o "$T/g.ds"
expect_err bad_empty_stdin 1 'stdin: .*empty input' sh -c "cifar-subset < '$T/empty' > '$T/g2.ds'"
expect_err bad_checkpoint 1 'not a dataset stream' cifar-subset "$T/c.ck" -o "$T/g.ds"
expect_err bad_missing_file 1 'nosuch' cifar-subset "$T/nosuch.ds" -o "$T/g.ds"
[ ! -e "$T/g.ds" ] && [ -z "$(ls "$T" | grep tmp)" ] && t_ok bad_input_no_files || t_fail bad_input_no_files "$(ls "$T")"

# bad options: exit 2
expect_err opt_first_syntax 2 'not an integer' cifar-subset "$T/a.ds" --first 5x
expect_err opt_per_class_zero 2 'out of range' cifar-subset "$T/a.ds" --per-class 0
expect_err opt_relabel_alone 2 'needs --classes' cifar-subset "$T/a.ds" --relabel
expect_err opt_holdout_alone 2 'go together' cifar-subset "$T/a.ds" --holdout 3
expect_err opt_holdout_random_alone 2 'needs --holdout' cifar-subset "$T/a.ds" --holdout-random
expect_err opt_seed_alone 2 'seed' cifar-subset "$T/a.ds" --first 3 --seed 3
expect_err opt_same_file 2 'same file' cifar-subset "$T/a.ds" --holdout 3 --holdout-out "$T/x.ds" -o "$T/x.ds"
expect_err opt_unknown_class 2 "'horse2' is neither" cifar-subset "$T/a.ds" --classes cat,horse2 -o "$T/g.ds"
[ ! -e "$T/g.ds" ] && t_ok opt_unknown_class_no_file || t_fail opt_unknown_class_no_file "left behind"
expect_err opt_class_index_range 2 "'10' is neither" cifar-subset "$T/a.ds" --classes 10
expect_err opt_class_twice 2 'listed twice' cifar-subset "$T/a.ds" --classes cat,3
expect_err opt_class_empty 2 'empty entry' cifar-subset "$T/a.ds" --classes cat,,dog
expect_err opt_unknown 2 'Try' cifar-subset --frobnicate
expect_err opt_extra_arg 2 'unexpected argument' cifar-subset "$T/a.ds" extra

# bounded memory on a full-size stream (60,000 records, 184 MB)
if [ -x "$BIN/cifar-synth" ]; then cifar-synth --count 60000 --seed 5 -o "$T/big.ds"
else "$PY" "$MK" dataset --count 60000 --labels random -o "$T/big.ds"; fi
maxrss() { # maxrss CMD...: peak resident memory of CMD in kB (output to /dev/null)
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -v "$@" >/dev/null 2>"$T/time" || { echo 0; return; }
    awk -F: '/Maximum resident/ { gsub(/ /, "", $2); print $2 }' "$T/time"
  else
    "$PY" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else 0)' "$@"
  fi
}
for mode in "--first 50000" "--classes cat,dog" "--per-class 500" \
            "--classes 1,2,3 --holdout 5000 --holdout-random --holdout-out $T/bigh.ds" \
            "--holdout 5000 --holdout-out $T/bigh.ds"; do
  kb=$(maxrss "$BIN/cifar-subset" "$T/big.ds" $mode -q -o "$T/bigout.ds")
  i=$((${i:-0} + 1)); name="memory_$i ($(echo "$mode" | cut -d' ' -f1-2))"
  # sanitizers add shadow memory and quarantine: the bound is for the normal build
  if [ -n "${BN_SANITIZED:-}" ] && [ "$kb" -gt 0 ]; then t_skip "$name" "RSS bound not meaningful under sanitizers ($kb kB)"
  elif [ "$kb" -gt 0 ] && [ "$kb" -lt 65536 ]; then t_ok "$name ($kb kB)"; else t_fail "$name" "max RSS $kb kB (limit 65536) for $mode"; fi
done
got=$(net-inspect --format tsv "$T/bigout.ds" | awk -F'\t' 'NR > 1 { s += $3 } END { print s }')
[ "$got" = 55000 ] 2>/dev/null && t_ok memory_holdout_output || t_fail memory_holdout_output "$got records"
rm -f "$T/big.ds" "$T/bigout.ds" "$T/bigh.ds"

# the real sample, through cifar-fetch
if ! have_sample; then
  t_skip real_first "sample not readable at $SAMPLE"
  t_skip real_per_class "sample not readable at $SAMPLE"
elif [ ! -x "$BIN/cifar-fetch" ]; then
  t_skip real_first "bin/cifar-fetch is not built"
  t_skip real_per_class "bin/cifar-fetch is not built"
else
  cifar-fetch --url "$SAMPLE" --allow-unofficial --split train 2>/dev/null > "$T/train.ds"
  got=$(cifar-subset --first 5000 -q < "$T/train.ds" | net-inspect --format tsv - | awk -F'\t' 'NR > 1 { s += $3 } END { print s }')
  [ "$got" = 5000 ] && t_ok real_first || t_fail real_first "$got records"
  got=$(cifar-subset --per-class 100 --seed 1 -q "$T/train.ds" | net-inspect --format tsv - | awk -F'\t' 'NR > 1 { s = s $3 " " } END { print s }')
  [ "$got" = "100 100 100 100 100 100 100 100 100 100 " ] && t_ok real_per_class || t_fail real_per_class "$got"
fi
t_done
