"""wdrepo.Repository: the repository of the CLI from Python."""
import ctypes
import json
import math
import os
import shutil
import tempfile

import numpy as np

from . import _lib as L
from . import _safetensors as st
from .errors import check


def _strs(items):
    items = [L.enc(os.fspath(x)) for x in (items or [])]
    arr = (ctypes.c_char_p * max(1, len(items)))(*items)
    return arr, len(items)


def _write_result(r, already_key=True):
    d = {"id": r.id.decode(), "model_hash": r.model_hash.decode(), "already_present": bool(r.already_present),
         "n_tensors": r.n_tensors, "tensor_bytes": r.tensor_bytes, "stored_bytes": r.stored_bytes,
         "new_bytes": r.new_bytes}
    return d


def _object(o):
    try:
        opts = json.loads(L.dec(o.options_json) or "{}")
    except ValueError:
        opts = L.dec(o.options_json)
    return {"id": o.id.decode(), "kind": o.kind.decode(), "parent": o.parent.decode() or None,
            "model_hash": o.model_hash.decode(), "parent_model_hash": o.parent_model_hash.decode() or None,
            "strategy": L.dec(o.strategy) or "", "options": opts, "message": L.dec(o.message) or "",
            "created": int(o.created), "names": [L.dec(o.names[i]) for i in range(o.n_names)],
            "n_tensors": o.n_tensors, "tensor_bytes": o.tensor_bytes, "stored_bytes": o.stored_bytes,
            "new_bytes": o.new_bytes, "n_files": o.n_files,
            "max_rel_error": None if math.isnan(o.max_rel_error) else o.max_rel_error}


def _strategy_fields(options, func, allowed=("sparsity", "outlier_fraction")):
    sp = of = q = 0.0
    bits = 0
    for k in options:
        if k not in allowed:
            raise TypeError("%s() got an unexpected keyword argument %r" % (func, k))
    if "sparsity" in options:
        sp, bits = float(options["sparsity"]), bits | L.WD_SET_SPARSITY
    if "outlier_fraction" in options:
        of, bits = float(options["outlier_fraction"]), bits | L.WD_SET_OUTLIER_FRACTION
    if "quality" in options:
        q, bits = float(options["quality"]), bits | L.WD_SET_QUALITY
    return sp, of, q, bits


class Repository:
    """A wdrepo repository. Repository() finds it as the CLI does ($WDREPO_DIR,
    else a .wdrepo folder in the current directory or a parent);
    Repository(path) opens the one at path; Repository.init(path) creates
    one. Close it with close() or use it as a context manager. Long calls
    take progress=callable(stage, done, total) and threads=N, release the
    GIL and stop on Ctrl-C (KeyboardInterrupt) leaving nothing behind."""

    def __init__(self, path=None, readonly=False):
        self._repo = None
        if path is None:
            found = ctypes.c_void_p()
            check(L.wd_repo_discover(ctypes.byref(found), L.enc(os.getcwd())))
            try:
                path = L.dec(ctypes.cast(found, ctypes.c_char_p).value)
            finally:
                ctypes.CDLL(None).free(found)
        self.path = os.fspath(path)
        h = ctypes.c_void_p()
        check(L.wd_repo_open(ctypes.byref(h), L.enc(self.path), L.WD_OPEN_READONLY if readonly else 0))
        self._repo = h

    @classmethod
    def init(cls, path):
        """Creates an empty repository at path (FileExistsError if one is
        there) and returns it opened."""
        check(L.wd_repo_init(L.enc(os.fspath(path))))
        return cls(path)

    def close(self):
        if self._repo is not None:
            L.wd_repo_close(self._repo)
            self._repo = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _h(self):
        if self._repo is None:
            raise ValueError("the repository is closed")
        return self._repo

    # ---- writing
    def add_base(self, dir, name=None, exclude=None, progress=None, threads=0):
        """Stores the model folder dir as a base; returns its id."""
        call = L._Call(progress)
        ex, n = _strs(exclude)
        ff = L.FolderFilter(ex, n)
        r = L.WriteResult()
        rc, msg = call.run(L.wd_add_base_ex, self._h(), L.enc(os.fspath(dir)), L.enc(name), ctypes.byref(ff),
                           ctypes.byref(call.options(threads)), ctypes.byref(r))
        check(rc, msg)
        self.last_result = _write_result(r)
        return r.id.decode()

    def commit(self, dir, on, strategy="lossless", name=None, message=None, exclude=None, progress=None, threads=0,
               **options):
        """Stores the fine-tune folder dir as a delta against on (a name or an
        id); options: sparsity (sparse), outlier_fraction (int4), quality
        (lowbit). Returns the delta's id."""
        sp, of, q, bits = _strategy_fields(options, "commit", ("sparsity", "outlier_fraction", "quality"))
        ex, n = _strs(exclude)
        co = L.CommitOpts(L.enc(strategy), message.encode("utf-8") if message is not None else None, L.enc(name),
                          sp, of, bits, ex, n, q)
        call = L._Call(progress)
        r = L.WriteResult()
        rc, msg = call.run(L.wd_commit, self._h(), L.enc(os.fspath(dir)), L.enc(on), ctypes.byref(co),
                           ctypes.byref(call.options(threads)), ctypes.byref(r))
        check(rc, msg)
        self.last_result = _write_result(r)
        return r.id.decode()

    def tag(self, name, ref):
        """Points name at the object ref names (moves an existing name);
        returns the id it pointed at before, or None."""
        was = (ctypes.c_char * L.HEX)()
        check(L.wd_tag_move(self._h(), L.enc(name), L.enc(ref), was))
        return was.value.decode() or None

    def untag(self, name):
        check(L.wd_untag(self._h(), L.enc(name)))

    def import_wdelta(self, path, name=None, progress=None, threads=0):
        """Imports a .wdelta file as a delta on its parent (found by its
        parent_hash); returns the delta's id."""
        call = L._Call(progress)
        r = L.WriteResult()
        rc, msg = call.run(L.wd_import, self._h(), L.enc(os.fspath(path)), L.enc(name),
                           ctypes.byref(call.options(threads)), ctypes.byref(r))
        check(rc, msg)
        self.last_result = _write_result(r)
        return r.id.decode()

    def export_wdelta(self, ref, path, format_version=2, reencode=None, force=False, progress=None, threads=0,
                      **options):
        """Writes delta ref as a .wdelta file (lossless deltas need reencode=
        "sparse"/"quantized"/"int4"); returns the added relative error."""
        sp, of, _, bits = _strategy_fields(options, "export_wdelta")
        eo = L.ExportOpts(format_version, L.enc(reencode), sp, of, 0.0, 0, bits, L.WD_OUTPUT_FORCE if force else 0)
        call = L._Call(progress)
        rc, msg = call.run(L.wd_export, self._h(), L.enc(ref), L.enc(os.fspath(path)), ctypes.byref(eo),
                           ctypes.byref(call.options(threads)))
        check(rc, msg)
        return eo.added_rel_error

    # ---- reading
    def resolve(self, ref):
        out = (ctypes.c_char * L.HEX)()
        check(L.wd_resolve(self._h(), L.enc(ref), out))
        return out.value.decode()

    def checkout(self, ref, out, force=False, dtype=None, only=None, progress=None, threads=0):
        """Writes model ref into the folder out (absent or empty unless
        force), verified against its model hash."""
        if dtype not in L.OUT_DTYPES:
            raise ValueError("dtype must be one of ('bfloat16', 'float16', 'float32') or None, got %r" % (dtype,))
        ol, n = _strs(only)
        co = L.CheckoutOpts(ol, n, L.OUT_DTYPES[dtype])
        call = L._Call(progress)
        rc, msg = call.run(L.wd_checkout_ex, self._h(), L.enc(ref), L.enc(os.fspath(out)),
                           L.WD_CHECKOUT_FORCE if force else 0, ctypes.byref(co), ctypes.byref(call.options(threads)))
        check(rc, msg)

    def load(self, ref, dtype=None, progress=None, threads=0):
        """Model ref's tensors as numpy arrays {name: array}, verified like
        checkout. dtype None: each tensor's own dtype, bfloat16 widened
        exactly to float32; "float32"/"float16"; "bfloat16": torch.bfloat16
        tensors (torch required)."""
        from .deltatensors import _bf16_to_torch, _dtype_name, _torch
        name = _dtype_name(dtype)
        if name == "bfloat16" and _torch() is None:
            raise ValueError("dtype='bfloat16' returns torch.bfloat16 tensors, and torch is not installed")
        tmp = tempfile.mkdtemp(prefix="wdrepo-load-")
        try:
            out = os.path.join(tmp, "out")
            self.checkout(ref, out, dtype=name, only=["*.safetensors"], progress=progress, threads=threads)
            res = {}
            for f in sorted(os.listdir(out)):
                if f.endswith(".safetensors"):
                    res.update(st.map_tensors(os.path.join(out, f)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        bf16 = {t for t, i in self.inspect(ref)["tensors"].items() if i["dtype"] == "BF16"} if name is None else ()
        for n, a in res.items():
            if name == "bfloat16" and a.dtype.name == "uint16":
                res[n] = _bf16_to_torch(a)
            elif n in bf16:  # numpy has no bfloat16: widened exactly
                w = a.astype(np.uint32)
                np.left_shift(w, np.uint32(16), out=w)  # (w <<= 16 fails on a 0-d array)
                res[n] = w.view(np.float32)
        return {n: res[n] for n in sorted(res)}

    def log(self):
        """Every object, newest first, as dicts (the fields of log --json)."""
        objs = ctypes.POINTER(L.ObjectInfo)()
        n = ctypes.c_size_t()
        check(L.wd_log(self._h(), ctypes.byref(objs), ctypes.byref(n)))
        try:
            return [_object(objs[i]) for i in range(n.value)]
        finally:
            L.wd_log_free(objs, n.value)

    def inspect(self, ref):
        """One object: log's fields plus its tensors and files."""
        info = ctypes.POINTER(L.InspectInfo)()
        check(L.wd_inspect(self._h(), L.enc(ref), ctypes.byref(info)))
        try:
            i = info.contents
            d = _object(i.obj)
            d["tensors"] = {}
            for k in range(i.n_tensors):
                t = i.tensors[k]
                d["tensors"][L.dec(t.name)] = {
                    "shape": [int(t.shape[j]) for j in range(t.ndim)], "dtype": t.dtype.decode(),
                    "nbytes": t.nbytes, "file": L.dec(t.file) or "", "encoding": L.dec(t.encoding) or "",
                    "n_chunks": t.n_chunks, "stored_bytes": t.stored_bytes, "rel_error": t.rel_error,
                    "max_abs_error": t.max_abs_error}
            d["files"] = [{"path": L.dec(i.files[k].path), "is_shard": bool(i.files[k].is_shard),
                           "size": i.files[k].size} for k in range(i.n_files)]
            return d
        finally:
            L.wd_inspect_free(info)

    def names(self):
        """{name: id} of every name."""
        arr = ctypes.POINTER(L.NameInfo)()
        n = ctypes.c_size_t()
        check(L.wd_names(self._h(), ctypes.byref(arr), ctypes.byref(n)))
        try:
            return {L.dec(arr[i].name): arr[i].id.decode() for i in range(n.value)}
        finally:
            L.wd_names_free(arr, n.value)

    # ---- maintenance
    def fsck(self, full=False, progress=None, threads=0):
        """Checks the repository; returns the list of problems (empty: sound),
        each {"kind", "message", "chunk", "object", "name"}."""
        rep = ctypes.POINTER(L.FsckReport)()
        call = L._Call(progress)
        rc, msg = call.run(L.wd_fsck, self._h(), L.WD_FSCK_FULL if full else 0, ctypes.byref(call.options(threads)),
                           ctypes.byref(rep))
        check(rc, msg)
        try:
            r = rep.contents
            return [{"kind": L.dec(p.kind), "message": L.dec(p.message), "chunk": p.chunk.decode() or None,
                     "object": p.object.decode() or None, "name": L.dec(p.name)}
                    for p in (r.problems[k] for k in range(r.n_problems))]
        finally:
            L.wd_fsck_free(rep)

    def rm(self, *refs, recursive=False):
        """Removes the objects refs name; returns the removed ids."""
        arr, n = _strs(refs)
        out = ctypes.POINTER(L.RemovedInfo)()
        cnt = ctypes.c_size_t()
        check(L.wd_rm(self._h(), arr, n, L.WD_RM_RECURSIVE if recursive else 0, ctypes.byref(out),
                      ctypes.byref(cnt)))
        try:
            return [out[i].id.decode() for i in range(cnt.value)]
        finally:
            L.wd_rm_free(out, cnt.value)

    def gc(self, dry_run=False, wait_ms=0):
        """Deletes unreferenced chunks; returns {"n_unreferenced", "unreferenced_bytes", ...}."""
        o = L.GcOpts(L.WD_GC_DRY_RUN if dry_run else 0, wait_ms)
        r = L.GcResult()
        check(L.wd_gc(self._h(), ctypes.byref(o), ctypes.byref(r)))
        return {k: getattr(r, k) for k, _ in L.GcResult._fields_}
