#!/bin/sh
# cli_valgrind.sh: one short training run (ResNet-8 width 4, 32 synthetic images, 1 epoch of 2
# steps) with --device cpu (oneDNN: its JIT needs --smc-check=all) and --device ref, then
# net-eval, net-inspect and cifar-subset on the results, each clean under valgrind's memcheck
# (no invalid access, no use of uninitialised values, no definite leak). About 80 s on 2 cores.
# Skips when valgrind is absent, or under the sanitizer build (make test-asan).
. "$(dirname "$0")/lib.sh"

if ! command -v valgrind >/dev/null 2>&1; then
  t_skip "valgrind" "valgrind is not installed (apt-get install valgrind)"; t_done; exit
fi
if [ -n "${BN_SANITIZED:-}" ]; then
  t_skip "valgrind" "the sanitizer build (make test-asan) does not run under valgrind"; t_done; exit
fi
for p in net-init net-train net-eval net-inspect cifar-synth cifar-subset; do
  [ -x "$BIN/$p" ] || { t_skip "valgrind" "$p not built"; t_done; exit; }
done
net-init --depth 8 --width 4 --seed 1 -o "$T/init.ck" 2>/dev/null
cifar-synth --count 32 --seed 1 --pattern gradient -o "$T/s.ds" 2>/dev/null
VG="valgrind -q --error-exitcode=99 --suppressions=$TOP/tests/valgrind.supp --smc-check=all --leak-check=full --errors-for-leak-kinds=definite"
# vg NAME CMD...: CMD under valgrind exits 0 and valgrind reports nothing
vg() {
  _n=$1; shift
  $VG "$@" >"$T/vg.out" 2>"$T/vg.err"; _rc=$?
  if [ "$_rc" -eq 99 ]; then t_fail "$_n" "valgrind errors: $(grep '^==' "$T/vg.err" | head -n 12)"
  elif [ "$_rc" -ne 0 ]; then t_fail "$_n" "exit $_rc: $(tail -n 5 "$T/vg.err")"
  elif grep -q '^==[0-9]*==' "$T/vg.err"; then t_fail "$_n" "valgrind says: $(grep '^==' "$T/vg.err" | head -n 12)"
  else t_ok "$_n"; fi
}
for dev in cpu ref; do
  vg "valgrind: net-train --device $dev (1 epoch)" net-train "$T/init.ck" --train "$T/s.ds" --epochs 1 --batch 16 \
    --device $dev --threads 1 --augment crop-flip --normalize meanstd -o "$T/$dev.ck"
  check "valgrind: net-train --device $dev wrote a whole checkpoint" net-inspect --verify "$T/$dev.ck"
done
vg "valgrind: net-eval --device cpu" net-eval --device cpu --threads 1 "$T/cpu.ck" "$T/s.ds"
vg "valgrind: net-inspect" net-inspect "$T/ref.ck"
vg "valgrind: cifar-subset --per-class" cifar-subset --per-class 2 --seed 1 "$T/s.ds" -o "$T/sub.ds"
t_done
