#!/bin/sh
# net-inspect: dataset and checkpoint summaries (text, TSV, JSON), histogram and tensor
# statistics against known values, --pick/--last/--tensors/--verify, bad streams.
# Inputs come from tests/mkds.py, written from FORMAT.md with Python's msgpack (an
# independent writer), and from net-init when it is built.
. "$(dirname "$0")/lib.sh"
MK="$TOP/tests/mkds.py"

if ! have_pymsgpack; then
  t_skip cli_inspect "python3-msgpack is not installed (scripts/deps.sh installs it)"
  t_done; exit
fi

expect help 0 net-inspect --help
grep -q -- '--verify' "$T/out" && t_ok help_text || t_fail help_text "no --verify in help"
expect version 0 net-inspect --version
grep -q 'net-inspect' "$T/out" && t_ok version_text || t_fail version_text "$(cat "$T/out")"

# json FILE EXPR: evaluates a Python expression over the parsed JSON document `d`; passes when true
json() { "$PY" -c 'import json, math, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"; }

# ---- datasets: 100 records of 3 classes, labels 0,0,0,1 repeated -> 75, 25, 0
"$PY" "$MK" dataset --count 100 --classes 'a,b"q,c\d' --labels 0,0,0,1 --chunk 30 --source 'made by "mkds"' -o "$T/d.ds"
expect ds_text 0 net-inspect "$T/d.ds"
grep -q '^records: *100 ' "$T/out" && t_ok ds_text_records || t_fail ds_text_records "$(cat "$T/out")"
grep -q '^shape: *3x32x32' "$T/out" && t_ok ds_text_shape || t_fail ds_text_shape "$(grep shape "$T/out")"
grep -q '^count: *100$' "$T/out" && t_ok ds_text_count || t_fail ds_text_count "$(grep count "$T/out")"
got=$(awk '/^histogram:/ { h = 1; next } h { printf "%s=%s ", $2, $3 }' "$T/out")
[ "$got" = 'a=75 b"q=25 c\d=0 ' ] && t_ok ds_text_histogram || t_fail ds_text_histogram "$got"
expect ds_tsv 0 net-inspect --format tsv "$T/d.ds"
got=$(tr '\t' '|' < "$T/out" | tr '\n' ' ')
[ "$got" = 'label|class|count 0|a|75 1|b"q|25 2|c\d|0 ' ] && t_ok ds_tsv_table || t_fail ds_tsv_table "$got"
expect ds_json 0 net-inspect --format json "$T/d.ds"
check ds_json_valid "$PY" -m json.tool "$T/out"
json "$T/out" 'd["kind"] == "dataset" and d["records"] == 100 and d["count"] == 100 and d["shape"] == [3, 32, 32]' \
  && t_ok ds_json_fields || t_fail ds_json_fields "$(head -c 300 "$T/out")"
json "$T/out" '[h["count"] for h in d["histogram"]] == [75, 25, 0] and d["classes"] == ["a", "b\"q", "c\\d"]' \
  && t_ok ds_json_histogram || t_fail ds_json_histogram "$(head -c 300 "$T/out")"
json "$T/out" 'd["source"] == "made by \"mkds\""' && t_ok ds_json_escaped || t_fail ds_json_escaped "$(head -c 300 "$T/out")"
# a count of nil
"$PY" "$MK" dataset --count 7 --count-nil -o "$T/nil.ds"
net-inspect --format json "$T/nil.ds" > "$T/nil.json" 2>&1
json "$T/nil.json" 'd["count"] is None and d["records"] == 7' && t_ok ds_nil_count_json || t_fail ds_nil_count_json "$(cat "$T/nil.json")"
net-inspect "$T/nil.ds" | grep -q '^count: *nil' && t_ok ds_nil_count_text || t_fail ds_nil_count_text "no nil count"
# stdin
got=$(net-inspect < "$T/d.ds" | grep '^stream:')
[ "$got" = "stream:   stdin" ] && t_ok ds_stdin || t_fail ds_stdin "$got"
expect_err ds_pick_usage 2 'apply to checkpoint' net-inspect --pick 0 "$T/d.ds"

# ---- checkpoints of known values (mkds.py TENSORS), two sections
"$PY" "$MK" checkpoint --sections 2 -o "$T/c.ck"
expect ck_text 0 net-inspect "$T/c.ck"
[ "$(grep -c '^checkpoint [01]: seed 7' "$T/out")" -eq 2 ] && t_ok ck_text_both || t_fail ck_text_both "$(grep '^checkpoint' "$T/out")"
grep -q 'epoch 1, step 10' "$T/out" && t_ok ck_text_epoch_step || t_fail ck_text_epoch_step "no epoch 1, step 10"
grep -q 'tensors: 6, parameters: 10, trainable: 4' "$T/out" && t_ok ck_text_totals || t_fail ck_text_totals "$(grep tensors: "$T/out" | head -1)"
grep -q 'arch: name=tiny depth=2 bn_eps=1e-05' "$T/out" && t_ok ck_text_arch || t_fail ck_text_arch "$(grep arch: "$T/out" | head -1)"
grep -q 'odd .*NaN 1, Inf 2' "$T/out" && t_ok ck_text_nan_inf || t_fail ck_text_nan_inf "$(grep odd "$T/out" | head -1)"
grep -q '^2 checkpoints in the stream' "$T/out" && t_ok ck_text_count || t_fail ck_text_count "$(tail -1 "$T/out")"

expect ck_tsv 0 net-inspect --format tsv "$T/c.ck"
awk -F'\t' 'NF != 15 { bad = 1 } END { exit bad || NR != 13 }' "$T/out" && t_ok ck_tsv_columns || t_fail ck_tsv_columns "$(head -3 "$T/out")"
head -1 "$T/out" | grep -qx "$(printf 'checkpoint\tepoch\tstep\tname\tdtype\tshape\ttrainable\trole\tnumel\tmean\tstd\tmin\tmax\tnan\tinf')" \
  && t_ok ck_tsv_header || t_fail ck_tsv_header "$(head -1 "$T/out")"
# conv.weight = 1..6: mean 3.5, population std sqrt(35/12), min 1, max 6
awk -F'\t' '$1 == 0 && $4 == "conv.weight" { d = $11 - 1.707825128; exit !($5 == "f32" && $6 == "2x3" && $7 == 0 && $8 == "param" && $9 == 6 && $10 == 3.5 && d < 1e-8 && d > -1e-8 && $12 == 1 && $13 == 6) }' "$T/out" \
  && t_ok ck_stats_known || t_fail ck_stats_known "$(grep conv.weight "$T/out" | head -1)"
# bn.gamma in section 1 is scaled by 2: [1, -3, 4, 6]
awk -F'\t' '$1 == 1 && $4 == "bn.gamma" { exit !($7 == 1 && $10 == 2 && $12 == -3 && $13 == 6) }' "$T/out" \
  && t_ok ck_stats_section1 || t_fail ck_stats_section1 "$(grep bn.gamma "$T/out")"
# odd = [1, NaN, Inf, -Inf, 3]: stats over the finite values, NaN and Inf counted
awk -F'\t' '$1 == 0 && $4 == "odd" { exit !($10 == 2 && $11 == 1 && $12 == 1 && $13 == 3 && $14 == 1 && $15 == 2) }' "$T/out" \
  && t_ok ck_stats_nan_inf || t_fail ck_stats_nan_inf "$(grep odd "$T/out" | head -1)"
awk -F'\t' '$1 == 0 && $4 == "counter" { exit !($5 == "i64" && $6 == "scalar" && $9 == 1 && $10 == "-") }' "$T/out" \
  && t_ok ck_scalar_int || t_fail ck_scalar_int "$(grep counter "$T/out" | head -1)"

expect ck_json 0 net-inspect --format json "$T/c.ck"
check ck_json_valid "$PY" -m json.tool "$T/out"
json "$T/out" 'd["count"] == 2 and [c["epoch"] for c in d["checkpoints"]] == [0, 1]' && t_ok ck_json_sections || t_fail ck_json_sections "$(head -c 300 "$T/out")"
json "$T/out" 'd["checkpoints"][0]["totals"] == {"tensors": 6, "shown": 6, "params": 10, "trainable_params": 4}' \
  && t_ok ck_json_totals || t_fail ck_json_totals "$(head -c 300 "$T/out")"
json "$T/out" 'd["checkpoints"][0]["state"]["note"] == "quote\" back\\ tab\t nl\n"' && t_ok ck_json_escaped || t_fail ck_json_escaped "$(grep note "$T/out")"
json "$T/out" '[t for t in d["checkpoints"][0]["tensors"] if t["name"] == "odd"][0]["nan"] == 1 and abs(d["checkpoints"][0]["tensors"][0]["std"] - math.sqrt(35 / 12)) < 1e-8' \
  && t_ok ck_json_stats || t_fail ck_json_stats "$(head -c 600 "$T/out")"
json "$T/out" 'd["checkpoints"][0]["tensors"][5]["shape"] == [] and "mean" not in d["checkpoints"][0]["tensors"][5]' \
  && t_ok ck_json_scalar || t_fail ck_json_scalar "$(tail -c 300 "$T/out")"

# --pick, --last, --tensors
expect ck_pick 0 net-inspect --pick 1 --format json "$T/c.ck"
json "$T/out" 'len(d["checkpoints"]) == 1 and d["checkpoints"][0]["index"] == 1 and d["checkpoints"][0]["step"] == 10' \
  && t_ok ck_pick_one || t_fail ck_pick_one "$(head -c 300 "$T/out")"
net-inspect --pick 0 --format tsv "$T/c.ck" | awk -F'\t' 'NR > 1 && $1 != 0 { bad = 1 } END { exit bad || NR != 7 }' \
  && t_ok ck_pick_zero || t_fail ck_pick_zero "rows of other checkpoints"
net-inspect --last "$T/c.ck" > "$T/last.txt"
grep -q '^checkpoint 1: ' "$T/last.txt" && ! grep -q '^checkpoint 0' "$T/last.txt" && t_ok ck_last || t_fail ck_last "$(grep '^checkpoint' "$T/last.txt")"
expect_err ck_pick_range 1 'holds 2 checkpoints' net-inspect --pick 2 "$T/c.ck"
[ ! -s "$T/out" ] && t_ok ck_pick_range_no_output || t_fail ck_pick_range_no_output "printed $(wc -c < "$T/out") bytes"
expect_err ck_pick_last 2 'exclude' net-inspect --pick 0 --last "$T/c.ck"
net-inspect --tensors 'bn.*' --format tsv "$T/c.ck" > "$T/bn.tsv"
got=$(awk -F'\t' 'NR > 1 { printf "%s/%s ", $1, $4 }' "$T/bn.tsv")
[ "$got" = "0/bn.gamma 0/bn.running_var 1/bn.gamma 1/bn.running_var " ] && t_ok ck_tensors_glob || t_fail ck_tensors_glob "$got"
net-inspect --tensors 'bn.*' --last "$T/c.ck" | grep -q 'tensors: 6 (2 shown), parameters: 10' && t_ok ck_tensors_text || t_fail ck_tensors_text "$(net-inspect --tensors 'bn.*' --last "$T/c.ck" | grep tensors:)"

# --verify
expect verify_ck 0 net-inspect --verify "$T/c.ck"
[ "$(cat "$T/out")" = ok ] && t_ok verify_ck_ok || t_fail verify_ck_ok "$(cat "$T/out")"
expect verify_ds 0 net-inspect --verify "$T/d.ds"
[ "$(cat "$T/out")" = ok ] && t_ok verify_ds_ok || t_fail verify_ds_ok "$(cat "$T/out")"

# ---- bad streams: exit 1 with the reader's message (it names the byte offset), no summary
sz=$(wc -c < "$T/c.ck")
head -c $((sz - 30)) "$T/c.ck" > "$T/trunc.ck"
head -c 5000 "$T/d.ds" > "$T/trunc.ds"
"$PY" - "$T/c.ck" "$T/bad.ck" "$T/d.ds" "$T/bad.ds" <<'PY'
import sys
import struct
d = bytearray(open(sys.argv[1], "rb").read()); i = d.rfind(struct.pack("<q", 42)); d[i] ^= 0x10
open(sys.argv[2], "wb").write(d)  # the last tensor's data (counter = 42) changed
d = bytearray(open(sys.argv[3], "rb").read()); d[len(d) // 2] ^= 0x01; open(sys.argv[4], "wb").write(d)
PY
expect_err bad_ck_truncated 1 'trunc.ck: at byte [0-9]+: .*truncated' net-inspect "$T/trunc.ck"
[ ! -s "$T/out" ] && t_ok bad_ck_truncated_no_output || t_fail bad_ck_truncated_no_output "printed a summary"
expect_err bad_ck_crc 1 'bad.ck: at byte [0-9]+: CRC-32 mismatch' net-inspect "$T/bad.ck"
expect_err bad_ds_truncated 1 'trunc.ds: at byte [0-9]+: stream truncated' net-inspect "$T/trunc.ds"
expect_err bad_ds_crc 1 'bad.ds: at byte [0-9]+: CRC-32 mismatch' net-inspect --format json "$T/bad.ds"
[ ! -s "$T/out" ] && t_ok bad_ds_no_output || t_fail bad_ds_no_output "printed a summary"
expect_err bad_verify 1 'CRC-32 mismatch' net-inspect --verify "$T/bad.ck"
[ ! -s "$T/out" ] && t_ok bad_verify_no_ok || t_fail bad_verify_no_ok "$(cat "$T/out")"
expect_err bad_empty 1 'stdin: at byte 0: empty input' sh -c "net-inspect < /dev/null"
printf 'not a stream at all' > "$T/garbage"
expect_err bad_garbage 1 'garbage: at byte 0' net-inspect "$T/garbage"
"$PY" -c 'import msgpack, sys; sys.stdout.buffer.write(msgpack.packb({"kind": "frobs", "version": 1}))' > "$T/frobs"
expect_err bad_kind 1 'this is a frobs stream' net-inspect "$T/frobs"
cat "$T/d.ds" "$T/d.ds" > "$T/two.ds"
expect_err bad_ds_extra 1 'data after the end' net-inspect "$T/two.ds"
expect_err bad_missing 1 'nosuch' net-inspect "$T/nosuch"
expect_err opt_format 2 "'xml' is not text, tsv or json" net-inspect --format xml "$T/c.ck"
expect_err opt_pick 2 'not an integer' net-inspect --pick x "$T/c.ck"
expect_err opt_unknown 2 'Try' net-inspect --frobnicate
expect_err opt_extra 2 'unexpected argument' net-inspect "$T/c.ck" extra

# ---- checkpoints written by our C writer (net-init): Python's msgpack reads them with no
# code of ours, and net-inspect's totals agree with net-init's own count
if [ -x "$BIN/net-init" ]; then
  net-init --arch resnet --depth 8 --width 4 --seed 3 -o "$T/n.ck" 2>"$T/init.err"
  want=$(sed -n 's/.*: \([0-9]*\) parameters, \([0-9]*\) trainable.*/\1 \2/p' "$T/init.err")
  got=$(net-inspect --format json "$T/n.ck" | "$PY" -c 'import json, sys
t = json.load(sys.stdin)["checkpoints"][0]["totals"]; print(t["params"], t["trainable_params"])')
  [ -n "$want" ] && [ "$got" = "$want" ] && t_ok net_init_totals || t_fail net_init_totals "net-inspect '$got', net-init '$want'"
  got=$("$PY" -c '
import sys, zlib, msgpack
objs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
h, ts, end = objs[0], objs[1:-1], objs[-1]
crc = 0
for t in ts: crc = zlib.crc32(t["data"], crc)
assert h["kind"] == "checkpoint" and h["tensors"] == len(ts) and end["records"] == len(ts) and end["crc32"] == crc
n = 0
for t in ts:
    k = 1
    for s in t["shape"]: k *= s
    if t["role"] == "param": n += k
print(n)' "$T/n.ck" 2>&1)
  [ "$got" = "$(echo "$want" | cut -d' ' -f1)" ] && t_ok python_reads_net_init || t_fail python_reads_net_init "$got"
  net-inspect --format tsv --tensors '*bn.var' "$T/n.ck" | awk -F'\t' 'NR > 1 { n++; if ($10 != 1 || $11 != 0 || $8 != "buffer") bad = 1 } END { exit bad || n == 0 }' \
    && t_ok net_init_bn_var_ones || t_fail net_init_bn_var_ones "running variances are not all 1"
else
  t_skip net_init_totals "bin/net-init is not built"
  t_skip python_reads_net_init "bin/net-init is not built"
  t_skip net_init_bn_var_ones "bin/net-init is not built"
fi
t_done
