#!/bin/bash
# summary.sh DIR TITLE RECIPE DATA VARIANT...: writes DIR/summary.md, a Markdown table of every
# variant's final numbers beside the published ones (pipelines/published.tsv, looked up by
# DIR's name as the target), with the settings each run used; and DIR/bars.tsv (variant, ours,
# published: accuracies in %, "-" when none) for bars.gp. Reads DIR/V.eval.tsv, DIR/V.tsv,
# DIR/V.settings and DIR/V.frozen.txt of each variant V.
set -euo pipefail
[ $# -ge 5 ] || { echo "usage: summary.sh DIR TITLE RECIPE DATA VARIANT..." >&2; exit 2; }
dir=$1 title=$2 recipe=$3 data=$4; shift 4
here=$(dirname "$0")
BIN=${BIN:-$here/../bin}
target=$(basename "$dir")
pub=$here/published.tsv
md=$dir/summary.md.tmp bars=$dir/bars.tsv.tmp
val() { awk -F'\t' -v k="$1" '$1==k{print $2; exit}' "$2"; }
published() {   # all published figures of target/variant: "45.9 (source); ..."
  awk -F'\t' -v t="$target" -v v="$1" '$1==t && $2==v {s = s (s ? "; " : "") $3 "% (" $4 ")"} END{print s}' "$pub"
}
first_published() { awk -F'\t' -v t="$target" -v v="$1" '$1==t && $2==v {print $3; exit}' "$pub"; }
{
  echo "# $target: $title"
  echo
  echo "Recipe: $recipe. Data: $data."
  v0=$1
  n_test=$(val images "$dir/$v0.eval.tsv")
  n_train=$("$BIN/net-inspect" --last "$dir/$v0.ckpt" 2>/dev/null | sed -n 's/.* train_images=\([0-9]*\).*/\1/p' | awk 'NR==1')
  echo "Training images: ${n_train:-?}. Test images: $n_test. Every run: seed and settings below; the full command lines are in $dir/<variant>.settings."
  case "$data" in *sample*) echo; echo "Note: trained on the CIFAR-10 *sample* (not the full 50,000/10,000 images): our numbers are not comparable with the published ones, which used the full dataset.";; esac
  echo
  echo "| variant | trainable parameters | epochs | train acc | test acc | test loss | published |"
  echo "|---|---|---|---|---|---|---|"
  for v in "$@"; do
    e=$dir/$v.eval.tsv
    acc=$(val accuracy "$e"); loss=$(val loss "$e")
    tr=$(sed -n 's/.*: \([0-9]*\) of \([0-9]*\) parameters trainable.*/\1 of \2/p' "$dir/$v.frozen.txt" 2>/dev/null | awk 'NR==1')
    last=$(tail -n 1 "$dir/$v.tsv")
    ep=$(echo "$last" | cut -f1); tracc=$(echo "$last" | cut -f5)
    p=$(published "$v")
    printf '| %s | %s | %s | %.1f%% | %.1f%% | %.4f | %s |\n' "$v" "${tr:-?}" "$ep" \
      "$(awk -v a="$tracc" 'BEGIN{print 100*a}')" "$(awk -v a="$acc" 'BEGIN{print 100*a}')" "$loss" "${p:--}"
  done
  echo
  echo "Settings per variant (net-init / net-freeze / net-train flags):"
  echo
  for v in "$@"; do
    echo "- **$v**: \`$(paste -sd'|' "$dir/$v.settings" | sed 's/|/ | /g')\`"
  done
} > "$md"
{
  printf 'variant\tours\tpublished\n'
  for v in "$@"; do
    acc=$(val accuracy "$dir/$v.eval.tsv"); p=$(first_published "$v")
    printf '%s\t%s\t%s\n' "$v" "$(awk -v a="$acc" 'BEGIN{printf "%.2f", 100*a}')" "${p:--}"
  done
} > "$bars"
mv -f "$md" "$dir/summary.md"
mv -f "$bars" "$dir/bars.tsv"
