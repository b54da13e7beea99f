"""Reading safetensors files into numpy arrays: read_tensors allocates each
array once and reads the file's bytes straight into it; map_tensors maps
the file (no copy at all), for results the library has just written."""
import json
import mmap
import os
import struct

import numpy as np

NP_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
             "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
FLOAT_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}

# bf16 -> float32 widening goes in blocks of this many elements, so its
# temporary stays at 8 MB whatever the tensor's size.
_BLOCK = 1 << 21


def read_header(path):
    """{name: (dtype, shape, start, end)} with offsets from the file's start."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        hdr = json.loads(f.read(n))
    out = {}
    for name, v in hdr.items():
        if name == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[name] = (v["dtype"], tuple(v["shape"]), 8 + n + s, 8 + n + e)
    return out


def _readinto(f, start, buf):
    f.seek(start)
    mv = memoryview(buf).cast("B")
    got = 0
    while got < len(mv):
        k = f.readinto(mv[got:])
        if not k:
            raise ValueError("safetensors file ends inside a tensor")
        got += k


def read_tensors(path, names=None, bf16="float32"):
    """Reads the tensors of path (those in names, if given) as numpy arrays.
    bf16: "float32" widens bfloat16 exactly into float32 arrays (allocated
    once: the raw bits are read into the upper half and widened in place);
    "raw" gives their uint16 bit patterns."""
    hdr = read_header(path)
    out = {}
    with open(path, "rb") as f:
        for name, (dt, shape, start, end) in hdr.items():
            if names is not None and name not in names:
                continue
            n = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if dt == "BF16" and bf16 == "float32":
                arr = np.empty(n, dtype=np.float32)
                u32 = arr.view(np.uint32)
                u16 = arr.view(np.uint16)
                _readinto(f, start, u16[n:])
                # Writing u32[i:j] overwrites u16[2i:2j], which ends at or
                # before n + j: the bits not yet widened are never touched.
                for i in range(0, n, _BLOCK):
                    j = min(n, i + _BLOCK)
                    u32[i:j] = u16[n + i:n + j].astype(np.uint32) << 16
                out[name] = arr.reshape(shape)
                continue
            arr = np.empty(n, dtype=np.dtype(NP_DTYPES[dt]))
            if arr.nbytes != end - start:
                raise ValueError("safetensors tensor %r: size does not match its shape" % name)
            _readinto(f, start, arr)
            out[name] = arr.reshape(shape)
    return out


def map_tensors(path, names=None):
    """The tensors of path (those in names, if given) as numpy arrays over
    one private, copy-on-write mapping of the file: nothing is copied, the
    arrays are writable, and the file may be removed at once (the mapping
    keeps its pages until the last array is freed). bfloat16 tensors come
    as uint16 bit patterns."""
    hdr = read_header(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size else b""
    out = {}
    for name, (dt, shape, start, end) in hdr.items():
        if names is not None and name not in names:
            continue
        d = np.dtype(NP_DTYPES[dt])
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if n * d.itemsize != end - start or end > size:
            raise ValueError("safetensors tensor %r: size does not match its shape" % name)
        if n == 0:
            out[name] = np.empty(shape, dtype=d)
        elif start % d.itemsize:  # the library aligns; an unaligned one is copied
            out[name] = np.frombuffer(m, dtype=np.uint8, count=end - start, offset=start).copy().view(d).reshape(shape)
        else:
            out[name] = np.frombuffer(m, dtype=d, count=n, offset=start).reshape(shape)
    return out
