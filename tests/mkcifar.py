#!/usr/bin/env python3
"""mkcifar.py: small synthetic archives in the format of the CIFAR-10 binary release, for the
command-line tests of cifar-fetch (standard library only: tarfile, gzip), and a reader of the
dataset streams cifar-fetch writes (needs python3-msgpack).

  mkcifar.py archive [-o FILE] [--records N] [--records-per M=N,..] [--labels cycle|L,L,..]
                     [--order sorted|shuffled|reverse] [--meta NAMES|none] [--bad VARIANT]
      Members cifar-10-batches-bin/data_batch_1..5.bin and test_batch.bin with N records each
      (default 3), batches.meta.txt (the ten standard names, or NAMES comma-separated; none to
      leave it out) and readme.html. Record i of member m (m = 1..5 for data_batch_m, 6 for
      test_batch) has label labels[i % len(labels)] (cycle: (m + i) % 10) and pixel bytes
      that identify it: byte 0 is m, bytes 1-2 are i (little-endian), the rest (m*7 + i*13 + j) % 256
      for pixel byte j. --order sets the order of members in the tar (sorted by name by default).
      --bad VARIANT makes it bad in one way:
        wrong-size   data_batch_3.bin gets 5 extra bytes (not a multiple of 3073)
        label10      record 1 of data_batch_2.bin has label 10
        missing      no data_batch_4.bin
        corrupt-gzip bytes in the middle of the compressed data are changed
        truncated    the compressed file stops at 60% of its length
        not-tar      a gzip file holding text, not a tar
        not-gzip     plain text
        empty        an empty file
  mkcifar.py dump FILE|-
      Reads a dataset stream (checks the trailer's count and CRC-32 itself) and prints
      "count N", "classes a,b,..", "source TEXT", then "LABEL M I" per record, where M and I are
      the member and index the pixels identify (bytes 0, 1-2) -- meaningful for archives made
      here; for other data they are just the first bytes.
  mkcifar.py pixels FILE INDEX
      Prints the hex of record INDEX's pixel bytes of a dataset stream.
"""
import argparse
import gzip
import io
import random
import signal
import sys
import tarfile
import zlib

RECORD = 3073
TOP = "cifar-10-batches-bin/"
DATA = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
        "data_batch_5.bin", "test_batch.bin"]
NAMES = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck"


PATTERN = bytes(range(256)) * 13


def record(m, i, label):
    start = (m * 7 + i * 13) % 256
    px = bytearray(PATTERN[start:start + 3072])
    px[0] = m
    px[1] = i & 255
    px[2] = (i >> 8) & 255
    return bytes([label]) + bytes(px)


def member_bytes(m, n, labels):
    out = bytearray()
    for i in range(n):
        lab = (m + i) % 10 if labels is None else labels[i % len(labels)]
        out += record(m, i, lab)
    return bytes(out)


def cmd_archive(a):
    counts = {name: a.records for name in DATA}
    if a.records_per:
        for item in a.records_per.split(","):
            k, v = item.split("=")
            counts[k if k.endswith(".bin") else k + ".bin"] = int(v)
    labels = None if a.labels == "cycle" else [int(x) for x in a.labels.split(",")]
    files = {}
    for m, name in enumerate(DATA, start=1):
        data = bytearray(member_bytes(m, counts[name], labels))
        if a.bad == "label10" and name == "data_batch_2.bin":
            data[1 * RECORD] = 10
        if a.bad == "wrong-size" and name == "data_batch_3.bin":
            data += b"\x01\x02\x03\x04\x05"
        if a.bad == "missing" and name == "data_batch_4.bin":
            continue
        files[TOP + name] = bytes(data)
    if a.meta != "none":
        files[TOP + "batches.meta.txt"] = ("\n".join(a.meta.split(",")) + "\n\n").encode()
    files[TOP + "readme.html"] = b"<meta HTTP-EQUIV=\"REFRESH\" content=\"0; url=http://www.cs.toronto.edu/~kriz/cifar.html\">\n"
    names = sorted(files)
    if a.order == "reverse":
        names.reverse()
    elif a.order == "shuffled":
        random.Random(7).shuffle(names)

    if a.bad in ("not-tar", "not-gzip", "empty"):
        text = b"" if a.bad == "empty" else b"this is not a tar archive\n" * 100
        blob = gzip.compress(text, mtime=0) if a.bad == "not-tar" else text
    else:
        tbuf = io.BytesIO()
        with tarfile.open(fileobj=tbuf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            d = tarfile.TarInfo(TOP.rstrip("/"))
            d.type = tarfile.DIRTYPE
            d.mode = 0o755
            tar.addfile(d)
            for name in names:
                ti = tarfile.TarInfo(name)
                ti.size = len(files[name])
                ti.mode = 0o644
                tar.addfile(ti, io.BytesIO(files[name]))
        blob = gzip.compress(tbuf.getvalue(), mtime=0)
        if a.bad == "corrupt-gzip":
            b = bytearray(blob)
            mid = len(b) // 2
            for k in range(mid, mid + 64):
                b[k] ^= 0x5A
            blob = bytes(b)
        elif a.bad == "truncated":
            blob = blob[: len(blob) * 6 // 10]
    out = sys.stdout.buffer if a.o in (None, "-") else open(a.o, "wb")
    out.write(blob)
    out.flush()


def read_stream(path):
    import msgpack
    f = sys.stdin.buffer if path == "-" else open(path, "rb")
    objs = msgpack.Unpacker(f, raw=False, max_bin_len=1 << 31)
    header = next(objs)
    assert header.get("kind") == "dataset", "not a dataset stream"
    crc, n, recs, trailer = 0, 0, [], None
    for o in objs:
        if "end" in o:
            trailer = o
            break
        k = o["n"]
        labels, pixels = o["labels"], o["pixels"]
        assert len(labels) == k and len(pixels) == k * 3072, "chunk sizes"
        crc = zlib.crc32(labels, crc)
        crc = zlib.crc32(pixels, crc)
        for i in range(k):
            recs.append((labels[i], pixels[i * 3072:(i + 1) * 3072]))
        n += k
    assert trailer is not None, "stream truncated: no trailer"
    assert trailer["records"] == n, "trailer count %d, read %d" % (trailer["records"], n)
    assert trailer["crc32"] == crc, "CRC-32 differs"
    assert next(objs, None) is None, "data after the trailer"
    if header.get("count") is not None:
        assert header["count"] == n, "header count %d, read %d" % (header["count"], n)
    return header, recs


def cmd_dump(a):
    header, recs = read_stream(a.file)
    print("count %d" % len(recs))
    print("classes " + ",".join(header["classes"]))
    print("source " + header.get("source", ""))
    for lab, px in recs:
        print("%d %d %d" % (lab, px[0], px[1] | (px[2] << 8)))


def cmd_pixels(a):
    _, recs = read_stream(a.file)
    print(recs[a.index][1].hex())


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("archive")
    q.add_argument("-o")
    q.add_argument("--records", type=int, default=3)
    q.add_argument("--records-per")
    q.add_argument("--labels", default="cycle")
    q.add_argument("--order", choices=["sorted", "shuffled", "reverse"], default="sorted")
    q.add_argument("--meta", default=NAMES)
    q.add_argument("--bad", choices=["wrong-size", "label10", "missing", "corrupt-gzip",
                                     "truncated", "not-tar", "not-gzip", "empty"])
    q = sub.add_parser("dump")
    q.add_argument("file")
    q = sub.add_parser("pixels")
    q.add_argument("file")
    q.add_argument("index", type=int)
    a = p.parse_args()
    {"archive": cmd_archive, "dump": cmd_dump, "pixels": cmd_pixels}[a.cmd](a)


if __name__ == "__main__":
    main()
