#!/bin/sh
# cifar-fetch: checksum policy, splits and their order, member order in the tar, class names,
# local paths / file:// URLs / stdin, the cache, every kind of bad archive, options, and the
# real sample. Synthetic archives come from tests/mkcifar.py (Python's tarfile and gzip);
# streams are read back by mkcifar.py's own msgpack reader, which checks trailer and CRC-32.
. "$(dirname "$0")/lib.sh"
MK="$TOP/tests/mkcifar.py"

expect help 0 cifar-fetch --help
grep -q -- '--allow-unofficial' "$T/out" && t_ok help_text || t_fail help_text "no --allow-unofficial in help"
expect version 0 cifar-fetch --version
grep -q 'cifar-fetch' "$T/out" && t_ok version_text || t_fail version_text "$(cat "$T/out")"
expect bad_option 2 cifar-fetch --no-such-option
expect bad_split 2 cifar-fetch --split valid
expect extra_argument 2 cifar-fetch somefile
expect list_with_output 2 cifar-fetch --list -o "$T/x"

if ! have_pymsgpack; then
  t_skip cli_fetch "python3-msgpack is not installed (scripts/deps.sh installs it)"
  t_done; exit
fi

mk() { "$PY" "$MK" archive "$@"; }
# records FILE: "LABEL M I" per record (M, I: the member and index the pixels identify)
records() { "$PY" "$MK" dump "$1" | tail -n +4; }
# want_records "M M .." N: what a split of members M.. with N records each and cycling
# labels must hold, computed from mkcifar.py's documented scheme: label (m + i) % 10.
want_records() { for m in $1; do i=0; while [ $i -lt "$2" ]; do echo "$(( (m + i) % 10 )) $m $i"; i=$((i+1)); done; done; }
# no_output FILE: neither FILE nor a temporary of it was left behind
no_output() { [ ! -e "$1" ] && ! ls "$1".tmp.* >/dev/null 2>&1; }

mk --records 3 -o "$T/good.tgz"
want_records "1 2 3 4 5" 3 >"$T/want_train"
want_records "6" 3 >"$T/want_test"

# --- the checksum policy -------------------------------------------------------------
expect_err unofficial_refused 1 'checksum differs.*--allow-unofficial' cifar-fetch -u "$T/good.tgz" -o "$T/r.ds"
check unofficial_refused_no_output no_output "$T/r.ds"
expect_err unofficial_refused_stdout 1 'checksum' sh -c "cifar-fetch -u '$T/good.tgz' > '$T/r2.ds'"

expect unofficial_accepted 0 cifar-fetch -u "$T/good.tgz" --allow-unofficial -o "$T/train.ds"
records "$T/train.ds" >"$T/got" && cmp -s "$T/got" "$T/want_train" && t_ok train_records_in_order ||
  t_fail train_records_in_order "$(head -c 300 "$T/got")"
grep -q 'data_batch_1.bin 3, data_batch_2.bin 3.*test_batch.bin 3' "$T/err" && t_ok reports_holdings ||
  t_fail reports_holdings "$(cat "$T/err")"
"$PY" "$MK" dump "$T/train.ds" | head -1 | grep -qx 'count 15' && t_ok train_count || t_fail train_count "$("$PY" "$MK" dump "$T/train.ds" | head -1)"
cifar-fetch -u "$T/good.tgz" --allow-unofficial --split test -q -o "$T/test.ds"
records "$T/test.ds" >"$T/got" && cmp -s "$T/got" "$T/want_test" && t_ok test_records || t_fail test_records "$(cat "$T/got")"
"$PY" "$MK" dump "$T/test.ds" | sed -n 2p | grep -qx 'classes airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck' &&
  t_ok class_names || t_fail class_names "$("$PY" "$MK" dump "$T/test.ds" | sed -n 2p)"

# --- both splits in one pass: the same bytes as two runs; all or nothing ----------------
expect both_splits 0 cifar-fetch -u "$T/good.tgz" --allow-unofficial -q --split both -o "$T/b_train.ds" --test-output "$T/b_test.ds"
cmp -s "$T/b_train.ds" "$T/train.ds" && cmp -s "$T/b_test.ds" "$T/test.ds" && t_ok both_splits_same_bytes ||
  t_fail both_splits_same_bytes "--split both differs from --split train / --split test"
mk --records 3 --order reverse -o "$T/rev.tgz"
cifar-fetch -u "$T/rev.tgz" --allow-unofficial -q --split both -o "$T/r_train.ds" --test-output "$T/r_test.ds" &&
  records "$T/r_train.ds" >"$T/got" && cmp -s "$T/got" "$T/want_train" && records "$T/r_test.ds" >"$T/got" &&
  cmp -s "$T/got" "$T/want_test" && t_ok both_splits_reverse_order || t_fail both_splits_reverse_order "records differ"
expect_err both_needs_two_files 2 'test-output' cifar-fetch -u "$T/good.tgz" --allow-unofficial --split both -o "$T/x.ds"
expect_err test_output_needs_both 2 'split both' cifar-fetch -u "$T/good.tgz" --allow-unofficial --test-output "$T/y.ds" -o "$T/x.ds"
mk --records 3 --bad label10 -o "$T/l10.tgz"
expect_err both_bad_archive 1 'label' cifar-fetch -u "$T/l10.tgz" --allow-unofficial --split both -o "$T/x.ds" --test-output "$T/y.ds"
check both_bad_archive_no_output sh -c "[ ! -e '$T/x.ds' ] && [ ! -e '$T/y.ds' ] && ! ls '$T'/*.tmp.* >/dev/null 2>&1"
expect quiet 0 cifar-fetch -u "$T/good.tgz" --allow-unofficial -q -o "$T/q.ds"
[ ! -s "$T/err" ] && t_ok quiet_silent || t_fail quiet_silent "$(cat "$T/err")"
cifar-fetch -u "$T/good.tgz" --allow-unofficial -q > "$T/stdout.ds"
check stdout_same_bytes cmp "$T/q.ds" "$T/stdout.ds"
cifar-fetch -u - --allow-unofficial -q < "$T/good.tgz" > "$T/stdin.ds"
records "$T/stdin.ds" >"$T/got" && cmp -s "$T/got" "$T/want_train" && t_ok stdin_archive || t_fail stdin_archive "$(head -c 200 "$T/got")"

# --- member order in the tar, sizes across blocks, class names -------------------------
# 700 records (2.1 MB) per member: records straddle the 1 MiB blocks; members out of order
# are spooled until their turn.
mk --records 700 -o "$T/big.tgz"
mk --records 700 --order reverse -o "$T/big_rev.tgz"
mk --records 700 --order shuffled -o "$T/big_shuf.tgz"
want_records "1 2 3 4 5" 700 >"$T/want_big"
for v in big big_rev big_shuf; do
  cifar-fetch -u "$T/$v.tgz" --allow-unofficial -q -o "$T/$v.ds"
  records "$T/$v.ds" >"$T/got" && cmp -s "$T/got" "$T/want_big" && t_ok "order_$v" || t_fail "order_$v" "$(head -c 200 "$T/got")"
done
check member_order_same_stream sh -c "cifar-fetch -u '$T/big_rev.tgz' --allow-unofficial -q | cmp -s - '$T/big_rev.ds' &&
  '$PY' '$MK' pixels '$T/big.ds' 2999 > '$T/p1' && '$PY' '$MK' pixels '$T/big_shuf.ds' 2999 > '$T/p2' && cmp -s '$T/p1' '$T/p2'"
mk --records-per data_batch_1=2,data_batch_2=0,data_batch_3=5,data_batch_4=1,data_batch_5=4,test_batch=3 --order shuffled -o "$T/uneven.tgz"
cifar-fetch -u "$T/uneven.tgz" --allow-unofficial -o "$T/uneven.ds" 2>"$T/err"
{ want_records 1 2; want_records 3 5; want_records 4 1; want_records 5 4; } >"$T/want"
records "$T/uneven.ds" >"$T/got" && cmp -s "$T/got" "$T/want" && t_ok uneven_counts || t_fail uneven_counts "$(cat "$T/got")"
grep -q 'data_batch_2.bin 0, data_batch_3.bin 5' "$T/err" && t_ok uneven_reported || t_fail uneven_reported "$(cat "$T/err")"
mk --meta a0,b1,c2,d3,e4,f5,g6,h7,i8,j9 --order reverse -o "$T/names.tgz"
cifar-fetch -u "$T/names.tgz" --allow-unofficial -q -o "$T/names.ds"
"$PY" "$MK" dump "$T/names.ds" | sed -n 2p | grep -qx 'classes a0,b1,c2,d3,e4,f5,g6,h7,i8,j9' && t_ok names_from_meta ||
  t_fail names_from_meta "$("$PY" "$MK" dump "$T/names.ds" | sed -n 2p)"
mk --meta none -o "$T/nometa.tgz"
cifar-fetch -u "$T/nometa.tgz" --allow-unofficial -q -o "$T/nometa.ds"
"$PY" "$MK" dump "$T/nometa.ds" | sed -n 2p | grep -q 'classes airplane,automobile,.*,truck$' && t_ok names_standard_without_meta ||
  t_fail names_standard_without_meta "$("$PY" "$MK" dump "$T/nometa.ds" | sed -n 2p)"
mk --meta a,b,c -o "$T/meta3.tgz"
expect_err meta_wrong_count 1 'batches.meta.txt.*3 classes' cifar-fetch -u "$T/meta3.tgz" --allow-unofficial -o "$T/m3.ds"

# --- --list, --check ------------------------------------------------------------------
expect list 0 cifar-fetch -u "$T/uneven.tgz" --list
grep -qx "$(printf 'cifar-10-batches-bin/data_batch_3.bin\t15365\t5')" "$T/out" && t_ok list_row || t_fail list_row "$(cat "$T/out")"
[ "$(grep -c '\.bin' "$T/out")" -eq 6 ] && head -1 "$T/out" | grep -qx "$(printf 'member\tbytes\trecords')" && t_ok list_all ||
  t_fail list_all "$(cat "$T/out")"
expect_err check_unofficial 1 'checksum differs' cifar-fetch -u "$T/good.tgz" --check
grep -q "^$(md5sum <"$T/good.tgz" | cut -c1-32)	unofficial" "$T/out" && t_ok check_prints_md5 || t_fail check_prints_md5 "$(cat "$T/out")"

# --- file:// URLs and the cache --------------------------------------------------------
mkdir -p "$T/src"
cp "$T/good.tgz" "$T/src/good.tgz"
URL="file://$T/src/good.tgz"
expect_err file_url_unofficial_refused 1 'checksum differs.*--allow-unofficial' cifar-fetch -u "$URL" --cache-dir "$T/cache" -o "$T/u.ds"
check file_url_refused_not_cached sh -c "! ls '$T/cache' 2>/dev/null | grep -q ."
check file_url_refused_no_output no_output "$T/u.ds"
expect_err file_url 0 'downloaded' cifar-fetch -u "$URL" --cache-dir "$T/cache" --allow-unofficial -o "$T/u.ds"
records "$T/u.ds" >"$T/got" && cmp -s "$T/got" "$T/want_train" && t_ok file_url_records || t_fail file_url_records "$(head -c 200 "$T/got")"
cached=$(ls "$T/cache" 2>/dev/null | head -1)
[ -n "$cached" ] && cmp -s "$T/cache/$cached" "$T/good.tgz" && t_ok cache_holds_archive || t_fail cache_holds_archive "cache: $(ls -la "$T/cache" 2>&1)"
[ "$(ls "$T/cache" | wc -l)" -eq 1 ] && t_ok cache_no_leftovers || t_fail cache_no_leftovers "$(ls "$T/cache")"
m1=$(stat -c %Y.%i "$T/cache/$cached" 2>/dev/null)
rm -f "$T/src/good.tgz"
sleep 1
expect cache_reused 0 cifar-fetch -u "$URL" --cache-dir "$T/cache" --allow-unofficial -o "$T/u2.ds"
grep -q downloaded "$T/err" && t_fail cache_no_redownload "$(cat "$T/err")" || t_ok cache_no_redownload
check cache_reused_same_stream cmp "$T/u.ds" "$T/u2.ds"
[ "$(stat -c %Y.%i "$T/cache/$cached" 2>/dev/null)" = "$m1" ] && t_ok cache_untouched || t_fail cache_untouched "mtime/inode changed"
expect_err cached_unofficial_needs_flag 1 'checksum differs.*cached' cifar-fetch -u "$URL" --cache-dir "$T/cache" -o "$T/u3.ds"
cp "$T/good.tgz" "$T/src/other.tgz"
XDG_CACHE_HOME="$T/xdg" cifar-fetch -u "file://$T/src/other.tgz" --allow-unofficial -q -o "$T/x.ds"
check xdg_cache_default sh -c "ls '$T/xdg/bnonly/' | grep -q other.tgz"
expect_err file_url_not_found 1 'download of .* failed' cifar-fetch -u "file://$T/src/none.tgz" --cache-dir "$T/cache2" --allow-unofficial -o "$T/nf.ds"
check file_url_not_found_no_output no_output "$T/nf.ds"
check file_url_not_found_not_cached sh -c "! ls '$T/cache2' 2>/dev/null | grep -q ."
expect_err download_refused 1 'download of .* failed' cifar-fetch -u "http://127.0.0.1:9/cifar.tgz" --cache-dir "$T/cache3" -o "$T/dl.ds"
check download_refused_no_output no_output "$T/dl.ds"
expect_err path_not_found 1 'No such file' cifar-fetch -u "$T/none.tgz" -o "$T/nf.ds"
expect_err path_is_dir 1 'directory' cifar-fetch -u "$T" -o "$T/nf.ds"

# --- bad archives: exit 1, a message, no output -----------------------------------------
for v in "wrong-size:data_batch_3.bin: member of wrong size" "label10:data_batch_2.bin: record 1 has label 10" \
         "missing:missing member.*data_batch_4" "corrupt-gzip:corrupt gzip" "truncated:truncated" \
         "not-tar:not a tar" "not-gzip:not a gzip" "empty:empty"; do
  name=${v%%:*}; pat=${v#*:}
  mk --records 40 --bad "$name" -o "$T/bad-$name.tgz"
  expect_err "bad_$name" 1 "$pat" cifar-fetch -u "$T/bad-$name.tgz" --allow-unofficial -o "$T/bad.ds"
  check "bad_${name}_no_output" no_output "$T/bad.ds"
  expect "bad_${name}_without_flag" 1 cifar-fetch -u "$T/bad-$name.tgz" -o "$T/bad.ds"
done
expect_err bad_label_other_split 1 'label 10' cifar-fetch -u "$T/bad-label10.tgz" --allow-unofficial --split test -o "$T/bad.ds"
expect_err bad_list 1 'missing member' cifar-fetch -u "$T/bad-missing.tgz" --list
expect_err unwritable_output 1 'cannot create' cifar-fetch -u "$T/good.tgz" --allow-unofficial -o "$T/no/such/dir/x.ds"

# --- a terminal is refused -------------------------------------------------------------
if command -v script >/dev/null 2>&1 && script -qec true /dev/null >/dev/null 2>&1; then
  script -qec "'$BIN/cifar-fetch' -u '$T/good.tgz' --allow-unofficial" /dev/null >"$T/tty" 2>&1; rc=$?
  [ "$rc" -eq 2 ] && grep -q terminal "$T/tty" && t_ok refuses_terminal || t_fail refuses_terminal "exit $rc: $(head -c 200 "$T/tty")"
else
  t_skip refuses_terminal "no pseudo-terminal (script(1) missing or not working)"
fi

# --- bounded memory: a 2 MB member is not held whole (nor are spooled members) -----------
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f %M -o "$T/rss" cifar-fetch -u "$T/big_rev.tgz" --allow-unofficial -q -o "$T/m.ds"
  /usr/bin/time -f %M -o "$T/rss0" cifar-fetch --help >/dev/null
  d=$(( $(cat "$T/rss") - $(cat "$T/rss0") ))
  # buffers: 1 MiB in, 1 MiB out, a 3 MiB chunk, 0.8 MiB replay, libarchive's own: < 12 MiB
  [ "$d" -lt 12288 ] && t_ok bounded_memory || t_fail bounded_memory "max RSS grew by $d KiB"
else
  t_skip bounded_memory "/usr/bin/time missing"
fi

# --- the real sample ----------------------------------------------------------------------
if ! have_sample; then
  t_skip real_sample "no readable sample at $SAMPLE (set BN_DATA to the folder holding cifar-10-sample.tar.gz)"
  t_done; exit
fi
expect_err sample_unofficial_refused 1 'checksum differs' cifar-fetch -u "$SAMPLE" -o "$T/s.ds"
expect sample_train 0 cifar-fetch -u "$SAMPLE" --allow-unofficial -o "$T/strain.ds"
grep -q 'data_batch_1.bin 4000, data_batch_2.bin 761' "$T/err" && t_ok sample_reported || t_fail sample_reported "$(cat "$T/err")"
cifar-fetch -u "$SAMPLE" --allow-unofficial --split test -q -o "$T/stest.ds"
"$PY" "$MK" dump "$T/strain.ds" >"$T/dtrain"
"$PY" "$MK" dump "$T/stest.ds" >"$T/dtest"
[ "$(head -1 "$T/dtrain")" = "count 7044" ] && t_ok sample_train_count || t_fail sample_train_count "$(head -1 "$T/dtrain")"
[ "$(head -1 "$T/dtest")" = "count 1000" ] && t_ok sample_test_count || t_fail sample_test_count "$(head -1 "$T/dtest")"
got=$(tail -n +4 "$T/dtrain" | head -5 | cut -d' ' -f1 | tr '\n' ,)
[ "$got" = "6,9,9,4,1," ] && t_ok sample_train_first_labels || t_fail sample_train_first_labels "$got"
got=$(tail -n +4 "$T/dtest" | head -5 | cut -d' ' -f1 | tr '\n' ,)
[ "$got" = "3,8,8,0,6," ] && t_ok sample_test_first_labels || t_fail sample_test_first_labels "$got"
# Pixels and labels against Python's tarfile: record 0, the last of data_batch_1, the first of
# data_batch_2 (the member boundary), the last record.
"$PY" - "$SAMPLE" "$T/strain.ds" "$T/stest.ds" >"$T/cmp" 2>&1 <<'EOF'
import sys, tarfile, msgpack
tar = tarfile.open(sys.argv[1])
def member(n): return tar.extractfile("cifar-10-batches-bin/" + n).read()
def stream(p):
    objs = list(msgpack.Unpacker(open(p, "rb"), raw=False, max_bin_len=1 << 31))
    return b"".join(o["labels"] for o in objs[1:-1]), b"".join(o["pixels"] for o in objs[1:-1])
train = b"".join(member("data_batch_%d.bin" % i) for i in range(1, 6))
test = member("test_batch.bin")
for name, raw, (lab, px) in (("train", train, stream(sys.argv[2])), ("test", test, stream(sys.argv[3]))):
    n = len(raw) // 3073
    assert len(lab) == n and len(px) == n * 3072, name + ": sizes"
    assert px[:3072] == raw[1:3073], name + ": record 0 pixels"
    for i in (0, 3999, 4000, n - 1) if name == "train" else (0, n - 1):
        assert lab[i] == raw[i * 3073], "%s: label %d" % (name, i)
        assert px[i * 3072:(i + 1) * 3072] == raw[i * 3073 + 1:(i + 1) * 3073], "%s: pixels %d" % (name, i)
    assert lab == bytes(raw[i * 3073] for i in range(n)), name + ": labels"
print("same")
EOF
[ "$(cat "$T/cmp")" = "same" ] && t_ok sample_bytes_match_tar || t_fail sample_bytes_match_tar "$(tail -3 "$T/cmp")"
expect sample_list 0 cifar-fetch -u "$SAMPLE" --list
grep -qx "$(printf 'cifar-10-batches-bin/data_batch_1.bin\t12292000\t4000')" "$T/out" && t_ok sample_list_row || t_fail sample_list_row "$(cat "$T/out")"
expect_err sample_check 1 'differs' cifar-fetch -u "$SAMPLE" --check
t_done
