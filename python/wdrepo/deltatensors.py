"""deltatensors 0.3's five functions over libwdrepo: save_delta_from_paths,
load_delta_from_paths, inspect, save_delta and load_delta, with its names,
signatures, defaults and exception types. The .wdelta bytes and the arrays
are the library's, so they are the same as the CLI's save-delta and
load-delta give on the same inputs."""
import ctypes
import numbers
import os
import shutil
import tempfile
import threading

import numpy as np

from . import _lib as L
from . import _safetensors as st
from .errors import check, make

_STRATEGY_KWARGS = ("sparsity", "outlier_fraction")
# Extensions of wdrepo's own, accepted by the functions that run long.
_EXTRA_KWARGS = ("format_version", "progress", "threads")

VERIFY_MODES = ("full", "cached", "none")


def _verify_mode(verify):
    if verify is True:
        return "full"
    if verify is False or verify is None:
        return "none"
    if verify not in VERIFY_MODES:
        raise ValueError("verify must be one of %s (or a bool), got %r" % (VERIFY_MODES, verify))
    return verify


def _fspath(p, what):
    try:
        return os.fspath(p)
    except TypeError:
        raise TypeError("%s must be a path (str or os.PathLike), not %s" % (what, type(p).__name__)) from None


def _strategy_opts(strategy, kwargs, func):
    for k in kwargs:
        if k not in _STRATEGY_KWARGS and k not in _EXTRA_KWARGS:
            raise TypeError("%s() got an unexpected keyword argument %r" % (func, k))
    if not isinstance(strategy, str):
        raise ValueError("Unknown strategy %r (valid: sparse, quantized, int4)" % (strategy,))
    so = L.StrategyOpts(strategy.encode(), 0.0, 0.0, 0)
    for k, bit in (("sparsity", L.WD_SET_SPARSITY), ("outlier_fraction", L.WD_SET_OUTLIER_FRACTION)):
        if k in kwargs:
            v = kwargs[k]
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError("%s must be a number, not %s" % (k, type(v).__name__))
            setattr(so, k, float(v))
            so.set |= bit
    if strategy == "lossless":  # a repository strategy, not a .wdelta one
        raise ValueError("Unknown strategy 'lossless' for a .wdelta file (valid: sparse, quantized, int4)")
    check(L.wd_strategy_check(ctypes.byref(so), b"sparse", 1))
    return so


def _format_version(kwargs):
    v = kwargs.get("format_version", 2)
    if v not in (1, 2):
        raise ValueError("format_version must be 1 or 2, got %r" % (v,))
    return v


def save_delta_from_paths(out_path, finetuned_dir, base_dir, strategy="sparse", prefetch=2, **kwargs):
    """Writes the delta of the model folder finetuned_dir against base_dir to
    out_path (replaced if it exists) and returns the file's parent_hash.
    kwargs: sparsity (sparse, default 0.9), outlier_fraction (int4, default
    0.01); wdrepo adds format_version (2), progress(stage, done, total) and
    threads (0: one per core). prefetch is accepted and has no effect: the
    library streams both folders itself."""
    if isinstance(prefetch, bool) or not isinstance(prefetch, numbers.Integral) or prefetch < 0:
        raise ValueError("prefetch must be a non-negative integer, got %r" % (prefetch,))
    so = _strategy_opts(strategy, kwargs, "save_delta_from_paths")
    fv = _format_version(kwargs)
    out = _fspath(out_path, "out_path")
    call = L._Call(kwargs.get("progress"))
    ph = (ctypes.c_char * L.HEX)()
    rc, msg = call.run(L.wd_save_delta_from_paths_ex, L.enc(out), L.enc(_fspath(finetuned_dir, "finetuned_dir")),
                       L.enc(_fspath(base_dir, "base_dir")), ctypes.byref(so), fv, L.WD_OUTPUT_FORCE, ph,
                       ctypes.byref(call.options(kwargs.get("threads", 0))))
    check(rc, msg)
    return ph.value.decode()


# verify="cached": (the .wdelta's identity, the base folder's weight files'
# identities) -> True, for this process. A file is the same when its device,
# inode, size and modification time are; any change re-verifies.
_verified = {}
_verified_lock = threading.Lock()


def _file_id(p):
    s = os.stat(p)
    return (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns)


def _cache_key(path, base_dir):
    try:
        base = os.path.realpath(base_dir)
        files = sorted(n for n in os.listdir(base) if n.endswith(".safetensors"))
        return (os.path.realpath(path), _file_id(path), base,
                tuple((n, _file_id(os.path.join(base, n))) for n in files))
    except OSError:
        return None


def _base_dtypes(base_dir):
    """{name: safetensors dtype} of the folder's weights (headers only)."""
    out = {}
    for n in sorted(os.listdir(base_dir)):
        if n.endswith(".safetensors"):
            for name, (dt, _shape, _s, _e) in st.read_header(os.path.join(base_dir, n)).items():
                out[name] = dt
    return out


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def _bf16_to_torch(arr_u16):
    torch = _torch()
    return torch.from_numpy(arr_u16.view(np.int16)).view(torch.bfloat16)


def _dtype_name(dtype):
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype
    else:
        name = str(dtype).replace("torch.", "")
        try:
            name = np.dtype(dtype).name
        except TypeError:
            pass
    if name not in ("float32", "float16", "bfloat16"):
        raise ValueError("dtype must be one of ('bfloat16', 'float16', 'float32') or None, got %r" % (dtype,))
    return name


def _names_of(path):
    info = inspect(path)
    return info["tensors"]


def load_delta_from_paths(path, base_dir, verify=True, dtype=None, **kwargs):
    """Rebuilds the fine-tune path describes from the base folder base_dir
    and returns its tensors (those the file names) as numpy arrays.
    verify: True/"full" checks the base against the file's parent_hash,
    False/None/"none" does not, "cached" skips a check this process already
    passed on the same unchanged files. dtype None: each tensor in its base's
    dtype, bfloat16 as float32 (exactly the float32 result); "float32",
    "float16"; "bfloat16" gives torch.bfloat16 tensors (torch required).
    Integer tensors keep their dtype. wdrepo adds progress= and threads=."""
    for k in kwargs:
        if k not in ("progress", "threads", "num_workers", "device"):
            raise TypeError("load_delta_from_paths() got an unexpected keyword argument %r" % k)
    if kwargs.get("device", "cpu") not in ("cpu", None):
        raise ValueError("wdrepo computes on the CPU only: device must be 'cpu'")
    mode = _verify_mode(verify)
    name = _dtype_name(dtype)
    if name == "bfloat16" and _torch() is None:
        raise ValueError("dtype='bfloat16' returns torch.bfloat16 tensors, and torch is not installed")
    path = _fspath(path, "path")
    base_dir = _fspath(base_dir, "base_dir")
    tensors = _names_of(path)  # also checks the file whole (checksum) before the work
    flags = 0
    key = None
    if mode == "none":
        flags |= L.WD_LOAD_NO_VERIFY
    elif mode == "cached":
        key = _cache_key(path, base_dir)
        with _verified_lock:
            if key is not None and key in _verified:
                flags |= L.WD_LOAD_NO_VERIFY
    out_dtype = {None: "float32", "float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}[name]
    tmp = tempfile.mkdtemp(prefix="wdrepo-load-")
    try:
        out = os.path.join(tmp, "out")
        call = L._Call(kwargs.get("progress"))
        rc, msg = call.run(L.wd_load_delta_from_paths, L.enc(path), L.enc(base_dir), L.enc(out),
                           L.OUT_DTYPES[out_dtype], flags,
                           ctypes.byref(call.options(kwargs.get("threads", kwargs.get("num_workers") or 0))))
        check(rc, msg)
        if key is not None:
            with _verified_lock:
                _verified[key] = True
        # float32 for dtype None too, so bfloat16 needs no widening here
        res = st.map_tensors(os.path.join(out, "model.safetensors"), names=set(tensors))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if name is None:
        # deltatensors gives a float16 base's tensors as float16 (numpy's
        # round to nearest even, as the library narrows): only bfloat16 stays
        # widened.
        bd = _base_dtypes(base_dir)
        for n, a in res.items():
            if bd.get(n) in ("F16", "F64"):
                res[n] = a.astype(np.float16 if bd[n] == "F16" else np.float64)
    elif name == "bfloat16":
        for n, a in res.items():
            if a.dtype == np.uint16:
                res[n] = _bf16_to_torch(a)
    return {n: res[n] for n in sorted(res)}


def inspect(path):
    """deltatensors' inspect(): path, size_mb, version, parent_hash, strategy,
    n_tensors and tensors {name: {"shape": [...], "dtype": base dtype}}. The
    whole file is checked (checksum included): a damaged file raises
    ValueError."""
    p = _fspath(path, "path")
    info = ctypes.POINTER(L.WdeltaInfo)()
    check(L.wd_inspect_file(ctypes.byref(info), L.enc(p)))
    try:
        i = info.contents
        tensors = {}
        for k in range(i.n_tensors):
            t = i.tensors[k]
            tensors[L.dec(t.name)] = {"shape": [int(t.shape[d]) for d in range(t.ndim)], "dtype": t.dtype.decode()}
        return {"path": str(path), "size_mb": i.size_mb, "version": i.version,
                "parent_hash": i.parent_hash.decode(), "strategy": i.strategy.decode(), "n_tensors": int(i.n_tensors),
                "tensors": tensors}
    finally:
        L.wd_inspect_file_free(info)


_ST_NAMES = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32", "int16": "I16",
             "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64", "bool": "BOOL"}


def _as_array(name, v):
    """(safetensors dtype, contiguous little-endian array holding the bytes)."""
    torch = None
    if type(v).__module__.startswith("torch"):
        torch = _torch()
    if torch is not None and isinstance(v, torch.Tensor):
        t = v.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        if t.dtype == torch.bfloat16:
            return "BF16", t.view(torch.int16).numpy()
        v = t.numpy()
    if isinstance(v, np.generic):
        v = np.asarray(v)
    if not isinstance(v, np.ndarray):
        raise TypeError("Cannot convert tensor %r of type %s to numpy." % (name, type(v)))
    dt = _ST_NAMES.get(v.dtype.name)
    if dt is None:
        raise TypeError("tensor %r: dtype %s cannot be stored" % (name, v.dtype))
    if v.dtype.byteorder == ">":
        v = v.astype(v.dtype.newbyteorder("<"))
    if not v.flags.c_contiguous:  # (np.ascontiguousarray would make a 0-d array 1-d)
        v = v.copy(order="C")
    return dt, v


def _named_tensors(d, what):
    if not isinstance(d, dict):
        raise TypeError("%s must be a dict of name -> array, not %s" % (what, type(d).__name__))
    arr = (L.NamedTensor * max(1, len(d)))()
    keep = []
    for i, (name, v) in enumerate(d.items()):
        if not isinstance(name, str):
            raise TypeError("%s: tensor names must be str, not %s" % (what, type(name).__name__))
        dt, a = _as_array(name, v)
        if a.ndim > L.MAX_DIMS:
            raise ValueError("tensor %r has %d dimensions (at most %d)" % (name, a.ndim, L.MAX_DIMS))
        nb = name.encode("utf-8")
        keep.append((nb, a))
        t = arr[i]
        t.name = nb
        t.dtype = dt.encode()
        t.ndim = a.ndim
        for k, s in enumerate(a.shape):
            t.shape[k] = s
        t.data = a.ctypes.data if a.nbytes else None
        t.nbytes = a.nbytes
    return arr, len(d), keep


def save_delta(path, finetuned, base, strategy="sparse", **kwargs):
    """deltatensors' save_delta: the delta of the state dict finetuned (numpy
    arrays or torch tensors, bfloat16 included) against base (same names and
    shapes) written to path; returns its parent_hash. Same kwargs as
    save_delta_from_paths."""
    so = _strategy_opts(strategy, kwargs, "save_delta")
    fv = _format_version(kwargs)
    p = _fspath(path, "path")
    ft, n_ft, keep1 = _named_tensors(finetuned, "finetuned")
    bs, n_bs, keep2 = _named_tensors(base, "base")
    call = L._Call(None)
    rc, msg = call.run(L.wd_save_delta, L.enc(p), ft, n_ft, bs, n_bs, ctypes.byref(so), fv)
    del keep1, keep2
    check(rc, msg)
    return inspect(p)["parent_hash"]


_NP_OF = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
          "BF16": np.uint16, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def load_delta(path, base, verify=True):
    """deltatensors' load_delta: the file's tensors as float32 base + delta,
    from the state dict base. With verify, base must hold exactly the
    tensors the file was made from (their hash is the file's parent_hash)."""
    mode = _verify_mode(verify)
    p = _fspath(path, "path")
    bs, n_bs, keep = _named_tensors(base, "base")
    out = ctypes.POINTER(L.NamedTensor)()
    n_out = ctypes.c_size_t()
    call = L._Call(None)
    rc, msg = call.run(L.wd_load_delta, ctypes.byref(out), ctypes.byref(n_out), L.enc(p), bs, n_bs,
                       0 if mode == "none" else 1)
    del keep
    check(rc, msg)
    try:
        res = {}
        for i in range(n_out.value):
            t = out[i]
            shape = tuple(int(t.shape[k]) for k in range(t.ndim))
            a = np.empty(shape, dtype=_NP_OF[t.dtype.decode()])
            if a.nbytes != t.nbytes:
                raise make(L.WD_ERROR, "tensor %r: %d bytes for shape %s" % (L.dec(t.name), t.nbytes, shape))
            if a.nbytes:
                ctypes.memmove(a.ctypes.data, t.data, a.nbytes)
            res[L.dec(t.name)] = a
        return res
    finally:
        L.wd_named_tensors_free(out, n_out.value)
