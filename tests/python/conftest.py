"""Shared helpers of the Python package's tests: where the fixtures, the
built library and the CLI are, and a tiny safetensors writer for generated
models."""
import json
import os
import struct
import subprocess

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.environ.get("WD_FIXTURES") or os.path.join(ROOT, "tests", "fixtures")
WDREPO = os.environ.get("WDREPO") or os.path.join(ROOT, "build", "wdrepo")
HASHES = json.load(open(os.path.join(FIX, "hashes.json"), encoding="utf-8"))


def fx(*p):
    return os.path.join(FIX, *p)


def cli(*args, check=True):
    """Runs the wdrepo CLI; returns its stdout."""
    # (the sanitizer build's wdrepo has the ASan runtime linked in: it must
    # not get the preloaded one this python3 runs with)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    r = subprocess.run([WDREPO, "-q"] + [str(a) for a in args], capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError("wdrepo %s: %s" % (" ".join(map(str, args)), r.stderr))
    return r.stdout


_ST = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64"}


def write_safetensors(path, tensors, bf16=()):
    """tensors {name: array}; names in bf16 are float32 arrays written as BF16
    (truncated: values must be bf16 already)."""
    hdr, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.array(tensors[name], order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        if name in bf16:
            raw = (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
            dt = "BF16"
        else:
            raw, dt = a.tobytes(), _ST[a.dtype]
        hdr[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def bits(a):
    """The array's bytes, for bit-for-bit comparisons (-0.0 != +0.0)."""
    return np.ascontiguousarray(a).view(np.uint8).tobytes()


@pytest.fixture
def tiny(tmp_path):
    """A tiny generated float32 base/ and ft/ (a fine-tune: same tensors)."""
    rng = np.random.default_rng(7)
    base = {"a.weight": rng.standard_normal((16, 8)).astype(np.float32),
            "b.bias": rng.standard_normal(8).astype(np.float32),
            "c.ids": np.arange(6, dtype=np.int64)}
    ft = {k: (v + (0.01 * rng.standard_normal(v.shape)).astype(np.float32)) if v.dtype == np.float32 else v
          for k, v in base.items()}
    for n, d in (("base", base), ("ft", ft)):
        os.mkdir(tmp_path / n)
        write_safetensors(tmp_path / n / "model.safetensors", d)
        (tmp_path / n / "config.json").write_text('{"torch_dtype": "float32"}\n')
    return tmp_path, base, ft
