#!/bin/sh
# Streams are self-describing: Python's msgpack (Debian's python3-msgpack) reads both kinds
# written by our C code with no code of ours, and the trailer's count and CRC-32 check out.
. "$(dirname "$0")/lib.sh"

if ! have_pymsgpack; then
  t_skip python_reads_dataset "python3-msgpack is not installed (scripts/deps.sh installs it)"
  t_skip python_reads_checkpoint "python3-msgpack is not installed"
  t_done; exit
fi

cat > "$T/read.py" <<'PY'
import sys, zlib, msgpack
kind = sys.argv[2]
objs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_bin_len=1 << 30))
sections, cur, crc, recs = 0, None, 0, 0
for o in objs:
    if cur is None:
        assert o["kind"] == kind and o["version"] == 1, o
        cur, crc, recs = o, 0, 0
    elif "end" in o:
        assert o["end"] == kind and o["records"] == recs and o["crc32"] == crc, (o, recs, crc)
        sections += 1; cur = None
    elif kind == "dataset":
        assert len(o["labels"]) == o["n"] and len(o["pixels"]) == o["n"] * 3072
        crc = zlib.crc32(o["labels"], crc); crc = zlib.crc32(o["pixels"], crc); recs += o["n"]
    else:
        n = 1
        for s in o["shape"]: n *= s
        size = {"f32": 4, "f64": 8, "u8": 1, "i64": 8, "u64": 8}[o["dtype"]]
        assert len(o["data"]) == n * size, o["name"]
        crc = zlib.crc32(o["data"], crc); recs += 1
assert cur is None, "no trailer"
print(sections, recs if kind == "dataset" else len(objs))
PY

"$BIN"/cifar-synth --count 2500 --seed 3 -o "$T/s.ds"
out=$("$PY" "$T/read.py" "$T/s.ds" dataset 2>&1)
[ "$out" = "1 2500" ] && t_ok python_reads_dataset || t_fail python_reads_dataset "$out"

if [ -x "$BIN"/net-init ]; then
  "$BIN"/net-init --arch resnet --depth 8 --width 4 --seed 2 -o "$T/a.ckpt" 2>/dev/null
  cat "$T/a.ckpt" "$T/a.ckpt" > "$T/two.ckpt"
  out=$("$PY" "$T/read.py" "$T/two.ckpt" checkpoint 2>&1)
  case "$out" in "2 "*) t_ok python_reads_checkpoint;; *) t_fail python_reads_checkpoint "$out";; esac
else
  t_skip python_reads_checkpoint "net-init not built"
fi
t_done
