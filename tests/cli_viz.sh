#!/bin/sh
# filter-viz: every picture is a real PNG of the asked size, bad layers and in-place layers
# are explained, gamma histograms count every BN channel, a missing or failing gnuplot is
# reported and never leaves a partial PNG behind. Inputs: a resnet-8 of width 4 from
# net-init and 20 synthetic images from cifar-synth.
. "$(dirname "$0")/lib.sh"

expect help 0 filter-viz --help
grep -q -- '--per-layer' "$T/out" && t_ok help_text || t_fail help_text "no --per-layer in help"
expect version 0 filter-viz --version
grep -q 'filter-viz' "$T/out" && t_ok version_text || t_fail version_text "$(cat "$T/out")"

if ! net-init --arch resnet --depth 8 --width 4 --seed 5 -o "$T/r8.ck" 2>/dev/null ||
   ! net-init --arch resnet --depth 8 --width 4 --seed 6 --gamma-init ones -o "$T/r8b.ck" 2>/dev/null ||
   ! cifar-synth --count 20 --pattern gradient -o "$T/d.ds" 2>/dev/null; then
  t_fail inputs "net-init or cifar-synth failed"; t_done; exit
fi

# ---- usage errors (no gnuplot needed)
expect_err no_mode 2 'filters, maps or gamma' filter-viz
expect_err bad_mode 2 "unknown picture 'pictures'" filter-viz pictures "$T/r8.ck"
expect_err labels_not_filters 2 'does not apply to filters' filter-viz filters "$T/r8.ck" --layer stem.conv --labels a
expect_err bad_size 2 'size' filter-viz filters "$T/r8.ck" --layer stem.conv --size 800 -o "$T/x.png"
expect_err labels_count 2 'names 1 checkpoint' filter-viz gamma "$T/r8.ck" "$T/r8b.ck" --labels one --format tsv
expect_err no_layer_opt 2 'layer' filter-viz filters "$T/r8.ck"
expect_err image_and_images 2 'exclude|one image' filter-viz maps "$T/r8.ck" "$T/d.ds" --layer stem.conv --image 1 --images 3

# ---- gamma numbers (no gnuplot needed): resnet-8 width 4 has 4+4+4+8+8+8+16+16+16 = 84 BN channels
sum_tsv() { awk -F'\t' -v L="$2" -v C="$3" 'NR > 1 && (L == "" || $1 == L) && $2 == C { s += $5 } END { print s + 0 }' "$1"; }
expect gamma_tsv 0 filter-viz gamma "$T/r8.ck" "$T/r8b.ck" --labels all,bnonly --format tsv --bins 10 -o "$T/g.tsv"
[ "$(head -1 "$T/g.tsv")" = "$(printf 'layer\tcheckpoint\tbin_lo\tbin_hi\tcount')" ] && t_ok gamma_tsv_header ||
  t_fail gamma_tsv_header "$(head -1 "$T/g.tsv")"
[ "$(sum_tsv "$T/g.tsv" all all)" = 84 ] && [ "$(sum_tsv "$T/g.tsv" all bnonly)" = 84 ] && t_ok gamma_tsv_counts ||
  t_fail gamma_tsv_counts "sums $(sum_tsv "$T/g.tsv" all all) and $(sum_tsv "$T/g.tsv" all bnonly), wanted 84"
[ "$(grep -c "	all	" "$T/g.tsv")" = 10 ] && t_ok gamma_tsv_bins || t_fail gamma_tsv_bins "$(grep -c "	all	" "$T/g.tsv") rows"
# gamma-init ones: every bnonly gamma is 1.0, all in one bin; uniform gammas lie in [0, 1]
nz=$(awk -F'\t' '$2 == "bnonly" && $5 > 0' "$T/g.tsv" | wc -l)
[ "$nz" = 1 ] && t_ok gamma_tsv_ones_one_bin || t_fail gamma_tsv_ones_one_bin "$nz nonempty bins"
awk -F'\t' 'NR == 2 { lo = $3 } { hi = $4 } END { exit !(lo >= 0 && hi <= 1.0000001) }' "$T/g.tsv" &&
  t_ok gamma_tsv_range || t_fail gamma_tsv_range "$(sed -n '2p;$p' "$T/g.tsv")"
expect gamma_tsv_per_layer 0 filter-viz gamma "$T/r8.ck" --per-layer --param beta --format tsv -o "$T/gl.tsv"
[ "$(sum_tsv "$T/gl.tsv" stem.bn r8.ck)" = 4 ] && [ "$(sum_tsv "$T/gl.tsv" s3.b0.bn2 r8.ck)" = 16 ] &&
  [ "$(cut -f1 "$T/gl.tsv" | sort -u | wc -l)" = 10 ] && t_ok gamma_tsv_per_layer_counts ||
  t_fail gamma_tsv_per_layer_counts "stem.bn $(sum_tsv "$T/gl.tsv" stem.bn r8.ck), layers $(cut -f1 "$T/gl.tsv" | sort -u | wc -l)"
expect_err gamma_not_a_checkpoint 1 '.' filter-viz gamma "$T/d.ds" --format tsv

# ---- pictures
GP=${BN_GNUPLOT:-gnuplot}
if ! command -v "$GP" >/dev/null 2>&1; then
  t_skip pictures "gnuplot is not installed (apt-get install gnuplot-nox); PNG tests skipped"
  t_done; exit
fi

# png FILE W H: a PNG signature and an IHDR of W x H
png() { "$PY" -c 'import struct, sys
b = open(sys.argv[1], "rb").read(24)
ok = len(b) == 24 and b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR" and struct.unpack(">II", b[16:24]) == (int(sys.argv[2]), int(sys.argv[3]))
sys.exit(0 if ok else 1)' "$@"; }
# picture NAME W H CMD...: runs CMD, then checks the PNG named by the last argument
picture() {
  _pn=$1 _pw=$2 _ph=$3; shift 3
  expect "$_pn" 0 "$@"
  eval "_pf=\${$#}"
  if png "$_pf" "$_pw" "$_ph"; then t_ok "${_pn}_png"; else
    t_fail "${_pn}_png" "not a ${_pw}x${_ph} PNG: $(od -An -tx1 -N24 "$_pf" 2>&1 | tr -s ' ' | head -c 120)"; fi
}

picture filters_rgb 640 480 filter-viz filters "$T/r8.ck" --layer stem.conv --size 640x480 -o "$T/f.png"
picture filters_grey 1000 1000 filter-viz filters "$T/r8.ck" --layer s2.b0.conv1 --in-channel 3 -o "$T/fg.png"
picture filters_1x1 500 500 filter-viz filters "$T/r8.ck" --layer s2.b0.short.conv --size 500x500 -o "$T/f1.png"
picture maps_grid 1000 1000 filter-viz maps "$T/r8.ck" "$T/d.ds" --layer stem.conv --image 3 -o "$T/m.png"
picture maps_relu 700 700 filter-viz maps "$T/r8.ck" "$T/d.ds" --layer s3.b0.relu --size 700x700 -o "$T/mr.png"
picture maps_rows 800 900 filter-viz maps "$T/r8.ck" "$T/d.ds" --layer s1.b0.conv1 --images 8 --channels 3 --seed 3 --size 800x900 -o "$T/m8.png"
picture maps_list 600 400 filter-viz maps "$T/r8.ck" "$T/d.ds" --layer stem.relu --image-list 1,7,19 --channel-list 3,0 --size 600x400 -o "$T/ml.png"
picture gamma_all 900 600 filter-viz gamma "$T/r8.ck" "$T/r8b.ck" --labels all,bnonly --size 900x600 -o "$T/g.png"
picture gamma_per_layer 1000 1000 filter-viz gamma "$T/r8.ck" "$T/r8b.ck" --per-layer --param beta -o "$T/gp.png"
# stdout, and the last checkpoint of a two-checkpoint stream vs --pick 0
filter-viz filters "$T/r8.ck" --layer stem.conv --size 300x300 > "$T/so.png" 2>"$T/err" && png "$T/so.png" 300 300 &&
  t_ok stdout_png || t_fail stdout_png "$(cat "$T/err")"
cat "$T/r8.ck" "$T/r8b.ck" > "$T/two.ck"
expect pick0 0 filter-viz filters "$T/two.ck" --pick 0 --layer stem.conv --size 300x300 --title t -o "$T/p0.png"
expect pick_last 0 filter-viz filters "$T/two.ck" --layer stem.conv --size 300x300 --title t -o "$T/pl.png"
expect pick_one 0 filter-viz filters "$T/r8.ck" --layer stem.conv --size 300x300 --title t -o "$T/p1.png"
cmp -s "$T/p0.png" "$T/p1.png" && ! cmp -s "$T/p0.png" "$T/pl.png" && t_ok pick_selects ||
  t_fail pick_selects "--pick 0 should draw r8.ck's filters and the default the last checkpoint's"
expect_err pick_beyond 1 '.' filter-viz filters "$T/two.ck" --pick 5 --layer stem.conv -o "$T/x.png"
# the same seed picks the same images; another seed others
filter-viz maps "$T/r8.ck" "$T/d.ds" --layer stem.conv --images 4 --seed 9 --size 400x400 -o "$T/s1.png" 2>/dev/null
filter-viz maps "$T/r8.ck" "$T/d.ds" --layer stem.conv --images 4 --seed 9 --size 400x400 -o "$T/s2.png" 2>/dev/null
filter-viz maps "$T/r8.ck" "$T/d.ds" --layer stem.conv --images 4 --seed 10 --size 400x400 -o "$T/s3.png" 2>/dev/null
cmp -s "$T/s1.png" "$T/s2.png" && ! cmp -s "$T/s1.png" "$T/s3.png" && t_ok images_seed || t_fail images_seed "seeds 9/9/10"

# ---- bad layers
expect_err bad_layer 1 "no layer 'nope'" filter-viz maps "$T/r8.ck" "$T/d.ds" --layer nope -o "$T/bad.png"
grep -q 's1.b0.conv1' "$T/err" && grep -q 'stem.relu' "$T/err" && t_ok bad_layer_lists || t_fail bad_layer_lists "$(cat "$T/err")"
expect_err filters_not_conv 1 'not a conv layer' filter-viz filters "$T/r8.ck" --layer stem.bn -o "$T/bad.png"
grep -q 's2.b0.short.conv' "$T/err" && ! grep -q ' stem.relu' "$T/err" && t_ok filters_lists_convs || t_fail filters_lists_convs "$(cat "$T/err")"
expect_err inplace_bn 1 'overwritten in place by stem.relu; ask for --layer stem.relu' \
  filter-viz maps "$T/r8.ck" "$T/d.ds" --layer stem.bn -o "$T/bad.png"
expect_err inplace_add 1 'ask for --layer s1.b0.relu' filter-viz maps "$T/r8.ck" "$T/d.ds" --layer s1.b0.add -o "$T/bad.png"
expect_err image_range 1 'holds 20 images' filter-viz maps "$T/r8.ck" "$T/d.ds" --layer stem.conv --image 20 -o "$T/bad.png"
expect_err in_channel_range 1 'input channels' filter-viz filters "$T/r8.ck" --layer stem.conv --in-channel 3 -o "$T/bad.png"
[ ! -e "$T/bad.png" ] && t_ok no_png_after_errors || t_fail no_png_after_errors "bad.png exists"

# ---- missing or failing gnuplot: a clear message, no PNG, the old file untouched
echo old > "$T/keep.png"
expect_err gnuplot_env_missing 1 'BN_GNUPLOT' env BN_GNUPLOT=/nonexistent/gnuplot \
  filter-viz filters "$T/r8.ck" --layer stem.conv -o "$T/keep.png"
expect_err gnuplot_not_in_path 1 'gnuplot is not installed' env -u BN_GNUPLOT PATH="$BIN" \
  "$BIN/filter-viz" gamma "$T/r8.ck" -o "$T/keep.png"
printf '#!/bin/sh\ncat >/dev/null\necho "fake gnuplot: broken" >&2\nexit 3\n' > "$T/gp-fail"
printf '#!/bin/sh\nout=$(sed -n "s/^set output .\\(.*\\).$/\\1/p" | head -1)\nprintf "\\211PNG\\r\\n" > "$out"\n' > "$T/gp-junk"
chmod +x "$T/gp-fail" "$T/gp-junk"
expect_err gnuplot_fails 1 'failed with status 3' env BN_GNUPLOT="$T/gp-fail" \
  filter-viz maps "$T/r8.ck" "$T/d.ds" --layer stem.conv -o "$T/keep.png"
expect_err gnuplot_junk 1 'not a PNG' env BN_GNUPLOT="$T/gp-junk" \
  filter-viz filters "$T/r8.ck" --layer stem.conv -o "$T/keep.png"
[ "$(cat "$T/keep.png")" = old ] && t_ok old_png_kept || t_fail old_png_kept "keep.png was replaced"
left=$(ls "$T" | grep -c 'keep.png.tmp')
[ "$left" = 0 ] && t_ok no_temporaries || t_fail no_temporaries "$(ls "$T")"
t_done
