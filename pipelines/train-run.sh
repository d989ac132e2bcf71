#!/bin/bash
# train-run.sh OUT INPUT [net-train options...]: one training run of a pipeline, resumable.
#
# The run trains into OUT.part (checkpoint stream) and OUT.part.tsv (metrics). net-train
# commits its output when it stops on SIGINT/SIGTERM (Ctrl-C, a scheduler's preemption), so
# OUT.part then holds the state at the last step: the next call continues the run from it
# with net-train --resume (bit-identical to an uninterrupted run) and keeps the metrics rows
# of the epochs that checkpoint has completed. Only a finished run becomes OUT and its
# metrics OUT without .ckpt + .tsv, so make never mistakes a partial run for a result.
# BIN names the programs' folder (default: bin beside this script's folder).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: train-run.sh OUT.ckpt INPUT [net-train options...]" >&2; exit 2; }
out=$1 in=$2; shift 2
BIN=${BIN:-$(dirname "$0")/../bin}
part=$out.part
log=${out%.ckpt}.tsv
rm -f "$part.new" "$part.new.tsv"
rc=0
if [ -s "$part" ] && "$BIN/net-inspect" --verify "$part" >/dev/null 2>&1; then
  # awk reads to the end: an early exit could SIGPIPE net-inspect, and pipefail would end the script
  done_epochs=$("$BIN/net-inspect" --last --format tsv "$part" | awk -F'\t' 'NR==2{print $2}')
  echo "train-run: resuming $part after epoch $done_epochs" >&2
  # keep the metrics rows of the epochs that checkpoint has completed (none when no log yet)
  if [ -s "$part.tsv" ]; then
    awk -F'\t' -v e="$done_epochs" 'NR==1 || $1+0 <= e+0' "$part.tsv" > "$part.tsv.tmp"
    mv -f "$part.tsv.tmp" "$part.tsv"
  fi
  "$BIN/net-train" "$part" --resume "$@" -o "$part.new" --log "$part.new.tsv" || rc=$?
  if [ -s "$part.new" ]; then             # committed: finished, or stopped by a signal
    if [ -s "$part.tsv" ]; then tail -n +2 "$part.new.tsv" >> "$part.tsv"; else cp "$part.new.tsv" "$part.tsv"; fi
    mv -f "$part.new" "$part"
  fi
  rm -f "$part.new.tsv"
else
  rm -f "$part" "$part.tsv"
  "$BIN/net-train" "$in" "$@" -o "$part" --log "$part.tsv" || rc=$?
fi
if [ "$rc" -ne 0 ]; then
  [ -s "$part" ] && echo "train-run: $out: stopped (status $rc); run the same command again to resume from $part" >&2
  exit "$rc"
fi
mv -f "$part.tsv" "$log"
mv -f "$part" "$out"
