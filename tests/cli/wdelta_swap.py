#!/usr/bin/env python3
"""wdelta_swap.py - breaks a format-2 .wdelta file's sort order the way a
buggy writer would: two neighbouring entries in the middle of one int64
index array swapped, the trailing SHA-256 recomputed so only the order is
wrong. Used by the CLI tests of load-delta's and import's index checks
(t_parallel_wdelta.sh, t_wdelta_repo.sh).

usage: wdelta_swap.py IN OUT PICK FIELDS [FLIPPED]

PICK is "longest" (the longest array of the named fields) or "last" (the
last one in the file); FIELDS is a comma-separated list of record field
names (indices, outlier_idx). FLIPPED, if given, also gets the result with
the checksum's last byte flipped.
"""
import hashlib
import struct
import sys


def main():
    src, out, pick, fields = sys.argv[1:5]
    fields = fields.split(",")
    b = bytearray(open(src, "rb").read())
    pos, end, chosen = 15 + struct.unpack("<I", b[11:15])[0], len(b) - 32, None
    while pos < end:  # records: name, field, dtype (u32 length + bytes), ndim, dims, u64 length
        parts = []
        for _ in range(3):
            n = struct.unpack("<I", b[pos:pos + 4])[0]
            parts.append(bytes(b[pos + 4:pos + 4 + n]).decode())
            pos += 4 + n
        pos += 4 + 8 * struct.unpack("<I", b[pos:pos + 4])[0]
        dl = struct.unpack("<Q", b[pos:pos + 8])[0]
        pos += 8
        if parts[1] in fields and (pick == "last" or chosen is None or dl > chosen[1]):
            chosen = (pos, dl)
        pos += dl
    if chosen is None:
        sys.exit("wdelta_swap.py: no %s array in %s" % ("/".join(fields), src))
    off, dl = chosen
    i = dl // 8 // 2
    b[off + 8 * i:off + 8 * i + 16] = b[off + 8 * i + 8:off + 8 * i + 16] + b[off + 8 * i:off + 8 * i + 8]
    b[end:] = hashlib.sha256(bytes(b[:end])).digest()
    open(out, "wb").write(b)
    if len(sys.argv) > 5:
        b[end - 1] ^= 1
        open(sys.argv[5], "wb").write(b)


main()
