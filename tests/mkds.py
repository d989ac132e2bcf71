#!/usr/bin/env python3
"""mkds.py: small synthetic streams in the project's format (FORMAT.md), written from the
spec with Python's msgpack and no code of ours, for the command-line tests; and a reader
that checks a dataset stream (trailer count, CRC-32) and lists its records.

  mkds.py dataset [--count N] [--classes a,b,..] [--labels cycle|blocks|random|L,L,..]
                  [--seed S] [--shape C,H,W] [--chunk K] [--count-nil] [--source TEXT] [-o FILE]
      Record i has label per --labels and pixels that identify it: bytes 0-3 hold i
      (little-endian uint32), byte 4 the label, the rest a pattern shifted by i.
  mkds.py checkpoint [--sections N] [-o FILE]
      Tensors with known values (see TENSORS below); section s has epoch s, step 10*s and
      bn.gamma scaled by s+1.
  mkds.py ids FILE|-
      Checks a dataset stream and prints "count N", "classes a,b,..", then "INDEX LABEL" per record.
"""
import argparse
import math
import random
import signal
import struct
import sys
import zlib

import msgpack

CIFAR10 = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck"


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def out_stream(path):
    return sys.stdout.buffer if path in (None, "-") else open(path, "wb")


def labels_for(args, k):
    n = args.count
    if args.labels == "cycle":
        return [i % k for i in range(n)]
    if args.labels == "blocks":  # class 0 first, then class 1, ... (as even as possible)
        return sorted(i % k for i in range(n))
    if args.labels == "random":
        rnd = random.Random(args.seed)
        return [rnd.randrange(k) for _ in range(n)]
    pat = [int(x) for x in args.labels.split(",")]
    return [pat[i % len(pat)] for i in range(n)]


def cmd_dataset(args):
    classes = args.classes.split(",")
    shape = [int(x) for x in args.shape.split(",")]
    ib = shape[0] * shape[1] * shape[2]
    if ib < 5:
        sys.exit("mkds.py: images need at least 5 bytes")
    labels = labels_for(args, len(classes))
    base = bytes(range(256)) * (ib // 256 + 2)
    f = out_stream(args.output)
    f.write(pack({"kind": "dataset", "version": 1, "shape": shape, "classes": classes,
                  "count": None if args.count_nil else args.count, "chunk": args.chunk,
                  "source": args.source}))
    crc = 0
    for start in range(0, args.count, args.chunk):
        idx = range(start, min(start + args.chunk, args.count))
        lab = bytes(labels[i] for i in idx)
        pix = b"".join(struct.pack("<IB", i, labels[i]) + base[i % 256: i % 256 + ib - 5] for i in idx)
        crc = zlib.crc32(lab, crc)
        crc = zlib.crc32(pix, crc)
        f.write(pack({"n": len(idx), "labels": lab, "pixels": pix}))
    f.write(pack({"end": "dataset", "records": args.count, "crc32": crc}))
    f.flush()


# name, dtype, shape, trainable, role, values (section s scales bn.gamma by s+1)
TENSORS = [
    ("conv.weight", "f32", [2, 3], False, "param", [1, 2, 3, 4, 5, 6]),
    ("bn.gamma", "f32", [4], True, "param", [0.5, -1.5, 2.0, 3.0]),
    ("bn.running_var", "f64", [3], False, "buffer", [1.0, 2.0, 3.0]),
    ("odd", "f32", [5], False, "buffer", [1.0, math.nan, math.inf, -math.inf, 3.0]),
    ("mask", "u8", [4], False, "mask", [1, 0, 1, 1]),
    ("counter", "i64", [], False, "rng", [42]),
]
FMT = {"f32": "<f", "f64": "<d", "u8": "<B", "i64": "<q", "u64": "<Q"}


def cmd_checkpoint(args):
    f = out_stream(args.output)
    for s in range(args.sections):
        f.write(pack({"kind": "checkpoint", "version": 1, "seed": 7, "epoch": s, "step": 10 * s,
                      "arch": {"name": "tiny", "depth": 2, "bn_eps": 1e-5},
                      "state": {"optimizer": "sgd", "note": 'quote" back\\ tab\t nl\n'},
                      "tensors": len(TENSORS), "endian": "little"}))
        crc = 0
        for name, dt, shape, trainable, role, values in TENSORS:
            if name == "bn.gamma":
                values = [v * (s + 1) for v in values]
            data = b"".join(struct.pack(FMT[dt], v) for v in values)
            crc = zlib.crc32(data, crc)
            f.write(pack({"name": name, "dtype": dt, "shape": shape, "trainable": trainable,
                          "role": role, "data": data}))
        f.write(pack({"end": "checkpoint", "records": len(TENSORS), "crc32": crc}))
    f.flush()


def cmd_ids(args):
    f = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    objs = msgpack.Unpacker(f, raw=False, max_bin_len=1 << 30)
    h = next(objs)
    assert h["kind"] == "dataset" and h["version"] == 1, h
    ib = h["shape"][0] * h["shape"][1] * h["shape"][2]
    crc, n, rows, trailer = 0, 0, [], None
    for o in objs:
        if trailer is not None:
            sys.exit("mkds.py: data after the trailer")
        if "end" in o:
            trailer = o
            continue
        assert len(o["labels"]) == o["n"] and len(o["pixels"]) == o["n"] * ib
        crc = zlib.crc32(o["labels"], crc)
        crc = zlib.crc32(o["pixels"], crc)
        for j in range(o["n"]):
            idx = struct.unpack_from("<I", o["pixels"], j * ib)[0]
            assert o["labels"][j] < len(h["classes"])
            rows.append((idx, o["labels"][j]))
        n += o["n"]
    if trailer is None:
        sys.exit("mkds.py: truncated: no trailer")
    assert trailer["end"] == "dataset" and trailer["records"] == n and trailer["crc32"] == crc, (trailer, n, crc)
    assert h["count"] is None or h["count"] == n, (h["count"], n)
    print("count", n, "header", "nil" if h["count"] is None else h["count"])
    print("classes", ",".join(h["classes"]))
    for idx, lab in rows:
        print(idx, lab)


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    ap = argparse.ArgumentParser(description="synthetic streams for the tests")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dataset")
    d.add_argument("--count", type=int, default=100)
    d.add_argument("--classes", default=CIFAR10)
    d.add_argument("--labels", default="cycle")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--shape", default="3,32,32")
    d.add_argument("--chunk", type=int, default=1024)
    d.add_argument("--count-nil", action="store_true")
    d.add_argument("--source", default="mkds.py")
    d.add_argument("-o", "--output")
    c = sub.add_parser("checkpoint")
    c.add_argument("--sections", type=int, default=1)
    c.add_argument("-o", "--output")
    i = sub.add_parser("ids")
    i.add_argument("file")
    args = ap.parse_args()
    {"dataset": cmd_dataset, "checkpoint": cmd_checkpoint, "ids": cmd_ids}[args.cmd](args)


if __name__ == "__main__":
    main()
