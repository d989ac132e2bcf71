#!/bin/sh
# mkseeds.sh: (re)makes the hand-written seeds of the fuzz corpus in tests/fuzz/corpus/TARGET/seed-*:
# small valid streams and archives made with the project's own Python writers (tests/mkds.py,
# tests/mkcifar.py) and a few option values. Run from the repository root; needs python3-msgpack.
set -eu
PY=/usr/bin/python3
C=tests/fuzz/corpus
mkdir -p $C/dataset $C/checkpoint $C/archive $C/cli
$PY tests/mkds.py dataset --count 5 --shape 1,2,3 --classes a,b,c -o $C/dataset/seed-small
$PY tests/mkds.py dataset --count 7 --shape 1,1,5 --chunk 3 --count-nil -o $C/dataset/seed-chunks-nil
$PY tests/mkds.py dataset --count 0 --shape 5,1,1 -o $C/dataset/seed-empty
$PY tests/mkds.py checkpoint --sections 2 -o $C/checkpoint/seed-two
$PY tests/mkds.py checkpoint --sections 1 -o $C/checkpoint/seed-one
# archives: byte 0 = mode (harness.h): 0x02 tar, split train; 0x01 .tar.gz, no split; 0x05 .tar.gz, split test
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
$PY tests/mkcifar.py archive --records 1 -o "$tmp/a.tgz"
gzip -dc "$tmp/a.tgz" > "$tmp/a.tar"
{ printf '\002'; cat "$tmp/a.tar"; } > $C/archive/seed-tar-train
{ printf '\001'; cat "$tmp/a.tgz"; } > $C/archive/seed-tgz-none
$PY tests/mkcifar.py archive --records 2 --meta none --order reverse -o "$tmp/b.tgz"
{ printf '\005'; cat "$tmp/b.tgz"; } > $C/archive/seed-tgz-test-reverse
# option values: byte 0 = parser (bits 0-1) and range (bits 2-4)
printf '\000123' > $C/cli/seed-int; printf '\001 0.5e-3' > $C/cli/seed-double
printf '\00280,120,160' > $C/cli/seed-list; printf '\003cuda' > $C/cli/seed-choice
printf '\000-9223372036854775808' > $C/cli/seed-int-min; printf '\001nan' > $C/cli/seed-nan
