#!/bin/sh
# net-init and net-freeze: command lines, exit codes, pipes, determinism.
. "$(dirname "$0")/lib.sh"

expect help_init 0 net-init --help
grep -q -- '--depth' "$T/out" && t_ok help_init_text || t_fail help_init_text "no --depth in help"
expect version_init 0 net-init --version
grep -q 'net-init' "$T/out" && t_ok version_init_text || t_fail version_init_text "$(cat "$T/out")"
expect help_freeze 0 net-freeze --help
grep -q 'random-k' "$T/out" && t_ok help_freeze_text || t_fail help_freeze_text "no random-k in help"
expect version_freeze 0 net-freeze --version

# summaries: the paper's parameter counts
expect_err init_resnet20 0 'resnet-20 .*272474 parameters, 272474 trainable, 1568 BN' \
  net-init --arch resnet --depth 20 --width 16 --seed 1 -o "$T/r20.ckpt"
expect_err init_bottleneck 0 'bottleneck-20 .*571114 parameters.* 4000 BN' \
  net-init --arch bottleneck --depth 20 -o "$T/b20.ckpt"
expect_err init_stdout 0 'resnet-14 .*175258 parameters' sh -c "net-init --depth 14 > '$T/r14.ckpt'"
[ -s "$T/r14.ckpt" ] && t_ok init_stdout_bytes || t_fail init_stdout_bytes "empty output"

# same seed, same bytes; another seed, other bytes
net-init --depth 20 --seed 1 > "$T/a.ckpt" 2>/dev/null
check same_seed_same_bytes cmp "$T/a.ckpt" "$T/r20.ckpt"
net-init --depth 20 --seed 2 > "$T/c.ckpt" 2>/dev/null
if cmp -s "$T/a.ckpt" "$T/c.ckpt"; then t_fail other_seed "identical bytes"; else t_ok other_seed; fi

# usage errors: exit 2 with a message, and no output file left behind
expect_err bad_depth 2 'depth must be 6n\+2' net-init --depth 21 -o "$T/bad.ckpt"
[ ! -e "$T/bad.ckpt" ] && t_ok bad_depth_no_file || t_fail bad_depth_no_file "file written"
expect_err bad_depth_syntax 2 'not an integer' net-init --arch bottleneck --depth 20x
expect_err bad_depth_bottleneck2 2 '9n\+2' net-init --arch bottleneck --depth 14
expect_err bad_arch 2 'unknown architecture' net-init --arch vgg
expect_err bad_width 2 'width' net-init --width 0
expect_err bad_gamma 2 'gamma-init' net-init --gamma-init twos
expect_err bad_option 2 'Try' net-init --frobnicate
expect_err extra_arg 2 'unexpected argument' net-init extra

# net-freeze in pipes
expect_err pipe_bn 0 '1568 of 272474' sh -c "net-init --depth 20 2>/dev/null | net-freeze --train bn > '$T/bn.ckpt'"
expect_err pipe_output 0 ': 650 of 272474' sh -c "net-freeze --train output < '$T/r20.ckpt' > '$T/out.ckpt'"
expect_err pipe_bn_output 0 '2218 of 272474' net-freeze --train bn+output -o "$T/bo.ckpt" "$T/r20.ckpt"
expect_err random_k 0 'random-k: 1568 of 272474' net-freeze --train random-k --seed 3 -o "$T/rk.ckpt" "$T/r20.ckpt"
expect_err random_k3 0 'random-k: 2352 of' net-freeze --train random-k --k 3 -o "$T/rk3.ckpt" "$T/r20.ckpt"
net-freeze --train random-k --seed 3 < "$T/r20.ckpt" > "$T/rk.again" 2>/dev/null
check random_k_deterministic cmp "$T/rk.ckpt" "$T/rk.again"
expect_err glob 0 '1568 of 272474' net-freeze --train none --glob '*.gamma' --glob '*.beta' -o "$T/g.ckpt" "$T/r20.ckpt"
expect_err glob_then_freeze 0 '784 of 272474' net-freeze --train bn --freeze-glob '*.beta' -o "$T/g2.ckpt" "$T/r20.ckpt"
expect_err keep_flags 0 '1568 of 272474.*unchanged' net-freeze -o "$T/k.ckpt" "$T/bn.ckpt"
# the result is what a second net-freeze sees: flags travel in the checkpoint
expect_err chained 0 '2218 of 272474' sh -c "net-freeze --glob 'fc.*' < '$T/bn.ckpt' > /dev/null"
expect_err bottleneck_bn 0 '4000 of 571114' net-freeze --train bn -o "$T/bb.ckpt" "$T/b20.ckpt"

# --pick: a stream of two checkpoints (all trainable, then BN-only)
cat "$T/r20.ckpt" "$T/bn.ckpt" > "$T/two.ckpt"
expect_err pick_last 0 '1568 of 272474.*unchanged' net-freeze -o /dev/null "$T/two.ckpt"
expect_err pick_first 0 '272474 of 272474.*unchanged' net-freeze --pick 0 -o /dev/null "$T/two.ckpt"
expect_err pick_missing 1 'asked for checkpoint 5' net-freeze --pick 5 -o /dev/null "$T/two.ckpt"

# errors
expect_err freeze_bad_regime 2 'unknown regime' net-freeze --train bn-only "$T/r20.ckpt"
expect_err freeze_k_without_random 2 'random-k' net-freeze --train bn --k 3 "$T/r20.ckpt"
expect_err freeze_glob_nothing 1 "matches no parameter" net-freeze --glob 'nothing*' -o "$T/n.ckpt" "$T/r20.ckpt"
[ ! -e "$T/n.ckpt" ] && t_ok glob_nothing_no_file || t_fail glob_nothing_no_file "file written"
expect_err freeze_missing_file 1 'nonexistent' net-freeze "$T/nonexistent.ckpt"
head -c 5000 "$T/r20.ckpt" > "$T/trunc.ckpt"
expect_err freeze_truncated 1 'trunc' net-freeze -o /dev/null "$T/trunc.ckpt"
expect_err freeze_empty 1 'empty' sh -c "net-freeze < /dev/null > /dev/null"
expect_err freeze_dataset 1 '.' sh -c "cifar-synth --count 3 2>/dev/null | net-freeze > /dev/null"

# what a flag looks like in the stream (Python's msgpack reads it with no code of ours)
if have_pymsgpack; then
  out=$("$PY" - "$T/rk.ckpt" <<'PY'
import sys, msgpack
objs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_bin_len=1 << 30))
h, ts = objs[0], objs[1:-1]
masks = {t["name"]: t for t in ts if t["role"] == "mask"}
tr = [t["name"] for t in ts if t["trainable"]]
ok = all(n + ".mask" in masks for n in tr) and len(tr) == 21 and all(m["dtype"] == "u8" for m in masks.values())
print("ok" if ok else "bad", h["arch"]["name"], h["arch"]["bn_eps"], sum(sum(m["data"]) for m in masks.values()))
PY
)
  [ "$out" = "ok resnet 1e-05 1568" ] && t_ok python_sees_masks || t_fail python_sees_masks "$out"
else
  t_skip python_sees_masks "python3-msgpack is not installed"
fi
t_done
