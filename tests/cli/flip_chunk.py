#!/usr/bin/env python3
"""flip_chunk.py - damages one stored chunk of a wdrepo repository the way a
bad disk would: one byte flipped, the row otherwise untouched. Used by the
CLI tests of damage detection (t_damage.sh, t_fsck.sh); python3's sqlite3
module only, so the tests need no sqlite3 program.

usage: flip_chunk.py REPO_DB WHAT OBJECT_PREFIX [NAME]

WHAT picks the chunk among those OBJECT's rows reference (first by name):
  raw-section   a tensor chunk of sections; a byte inside a raw section
  zstd-section  a tensor chunk of sections; a byte inside a zstd section
  array         a chunk of a lossy tensor's array (tensor_array rows)
  file          a chunk of a non-weight file (file rows, is_shard = 0)
  header        a chunk of a shard header (file rows, is_shard = 1)
  delete        any tensor chunk: its row is deleted instead
NAME restricts the choice to that tensor or file. Prints the chunk's id in
hex, then the tensor or file it belongs to (and the array field).
"""
import sqlite3
import struct
import sys


def sections(data):
    """(code, payload offset, payload length) of a sectioned chunk."""
    out, p = [], 4
    while p + 5 <= len(data):
        code = data[p]
        n = struct.unpack("<I", data[p + 1:p + 5])[0]
        out.append((code, p + 5, n))
        p += 5 + n
    return out


def ids(blob):
    return [bytes(blob[i:i + 32]) for i in range(0, len(blob), 32)]


def main():
    db_path, what, prefix = sys.argv[1], sys.argv[2], sys.argv[3].lower()
    only = sys.argv[4] if len(sys.argv) > 4 else None
    db = sqlite3.connect(db_path)
    obj = [r[0] for r in db.execute("SELECT id FROM object") if r[0].hex().startswith(prefix)]
    if len(obj) != 1:
        sys.exit("flip_chunk: %d objects match %s" % (len(obj), prefix))
    obj = obj[0]
    if what in ("raw-section", "zstd-section", "delete"):
        refs = [(n, None, c) for n, c in db.execute(
            "SELECT name, chunks FROM tensor WHERE object = ? ORDER BY name", (obj,))]
    elif what == "array":
        refs = [(n, f, c) for n, f, c in db.execute(
            "SELECT tensor, field, chunks FROM tensor_array WHERE object = ? ORDER BY tensor, field", (obj,))]
    else:
        refs = [(n, None, c) for n, c in db.execute(
            "SELECT path, chunks FROM file WHERE object = ? AND is_shard = ? ORDER BY path",
            (obj, 1 if what == "header" else 0))]
    for name, field, blob in refs:
        if only is not None and name != only:
            continue
        for cid in ids(blob):
            row = db.execute("SELECT codec, data FROM chunk WHERE id = ?", (cid,)).fetchone()
            if row is None:
                continue
            codec, data = row[0], bytearray(row[1])
            at = None
            if what in ("raw-section", "zstd-section"):
                want = 0 if what == "raw-section" else 1
                if codec == 2:
                    for code, off, n in sections(data):
                        if code == want and n >= 16:
                            at = off + n // 2
                            break
            elif what == "delete":
                at = 0
            elif len(data) >= 8:
                at = len(data) // 2
            if at is None:
                continue
            if what == "delete":
                db.execute("DELETE FROM chunk WHERE id = ?", (cid,))
            else:
                data[at] ^= 0x10
                db.execute("UPDATE chunk SET data = ? WHERE id = ?", (bytes(data), cid))
            db.commit()
            print(cid.hex(), name, field or "")
            return
    sys.exit("flip_chunk: no %s chunk found in object %s" % (what, prefix))


main()
