"""Loading libwdrepo.so and declaring the C interface of src/wdrepo.h.

ctypes mirrors of the public structs live here; they must follow the header
field by field (tests/python/test_abi.py checks sizes against the C compiler
when one is there).
"""
import _thread
import ctypes
import ctypes.util
import os
import threading

HEX = 65
MAX_DIMS = 16

WD_OK = 0
WD_ERROR = -1
WD_EUSAGE = -2
WD_ENOTFOUND = -3
WD_EAMBIGUOUS = -4
WD_EBADINPUT = -5
WD_ECORRUPT = -6
WD_EIO = -7
WD_ENOMEM = -8
WD_EBUSY = -9
WD_EEXISTS = -10
WD_EMISMATCH = -11
WD_ECANCELLED = -12

WD_SET_SPARSITY = 1
WD_SET_OUTLIER_FRACTION = 2
WD_SET_QUALITY = 4
WD_LOAD_NO_VERIFY = 2
WD_OUTPUT_FORCE = 1
WD_CHECKOUT_FORCE = 1
WD_OPEN_READONLY = 1
WD_FSCK_FULL = 1
WD_RM_RECURSIVE = 1
WD_GC_DRY_RUN = 1

OUT_DTYPES = {None: 0, "original": 0, "float32": 1, "bfloat16": 2, "float16": 3}


def _candidates():
    env = os.environ.get("WDREPO_LIB")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libwdrepo.so.0")  # bundled by setup.py
    try:
        from . import _libpath  # written by make install
        yield _libpath.LIBRARY
    except ImportError:
        pass
    yield "libwdrepo.so.0"
    found = ctypes.util.find_library("wdrepo")
    if found:
        yield found


def _load():
    errors = []
    for cand in _candidates():
        if os.sep in cand and not os.path.exists(cand):
            continue
        try:
            return ctypes.CDLL(cand)
        except OSError as e:
            errors.append(str(e))
    raise ImportError("wdrepo: cannot load libwdrepo.so.0 (build it with make, install it with make install, "
                      "or set WDREPO_LIB to its path): " + "; ".join(errors or ["not found"]))


lib = _load()

c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_uint = ctypes.c_uint
c_u64 = ctypes.c_uint64
c_i64 = ctypes.c_int64
c_size = ctypes.c_size_t
c_double = ctypes.c_double
c_void_p = ctypes.c_void_p
P = ctypes.POINTER

PROGRESS_FN = ctypes.CFUNCTYPE(None, c_void_p, c_char_p, c_u64, c_u64)


class Options(ctypes.Structure):
    _fields_ = [("threads", c_int), ("level", c_int), ("progress", PROGRESS_FN), ("progress_ud", c_void_p)]


class StrategyOpts(ctypes.Structure):
    _fields_ = [("strategy", c_char_p), ("sparsity", c_double), ("outlier_fraction", c_double), ("set", c_uint),
                ("quality", c_double)]


class WriteResult(ctypes.Structure):
    _fields_ = [("id", ctypes.c_char * HEX), ("model_hash", ctypes.c_char * HEX), ("already_present", c_int),
                ("n_tensors", c_u64), ("tensor_bytes", c_u64), ("stored_bytes", c_u64), ("new_bytes", c_u64),
                ("n_unchanged", c_u64), ("n_encoded", c_u64), ("n_whole", c_u64), ("n_dropped", c_u64),
                ("name_was", ctypes.c_char * HEX), ("n_parent_tensors", c_u64), ("n_reshaped", c_u64),
                ("parent", ctypes.c_char * HEX), ("strategy", ctypes.c_char * 16)]


class FolderFilter(ctypes.Structure):
    _fields_ = [("exclude", P(c_char_p)), ("n_exclude", c_size)]


class CommitOpts(ctypes.Structure):
    _fields_ = [("strategy", c_char_p), ("message", c_char_p), ("name", c_char_p), ("sparsity", c_double),
                ("outlier_fraction", c_double), ("set", c_uint), ("exclude", P(c_char_p)), ("n_exclude", c_size),
                ("quality", c_double)]


class ObjectInfo(ctypes.Structure):
    _fields_ = [("id", ctypes.c_char * HEX), ("kind", ctypes.c_char * 8), ("parent", ctypes.c_char * HEX),
                ("model_hash", ctypes.c_char * HEX), ("parent_model_hash", ctypes.c_char * HEX),
                ("strategy", c_char_p), ("options_json", c_char_p), ("message", c_char_p), ("created", c_i64),
                ("names", P(c_char_p)), ("n_names", c_size), ("n_tensors", c_u64), ("tensor_bytes", c_u64),
                ("stored_bytes", c_u64), ("new_bytes", c_u64), ("n_files", c_u64), ("max_rel_error", c_double)]


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("dtype", ctypes.c_char * 12), ("ndim", c_int), ("shape", c_u64 * MAX_DIMS),
                ("nbytes", c_u64), ("file", c_char_p), ("encoding", c_char_p), ("n_chunks", c_u64),
                ("stored_bytes", c_u64), ("rel_error", c_double), ("max_abs_error", c_double)]


class FileInfo(ctypes.Structure):
    _fields_ = [("path", c_char_p), ("is_shard", c_int), ("size", c_u64)]


class InspectInfo(ctypes.Structure):
    _fields_ = [("obj", ObjectInfo), ("n_tensors", c_size), ("tensors", P(TensorInfo)), ("n_files", c_size),
                ("files", P(FileInfo))]


class ExportOpts(ctypes.Structure):
    _fields_ = [("format_version", c_int), ("reencode", c_char_p), ("sparsity", c_double),
                ("outlier_fraction", c_double), ("added_rel_error", c_double), ("reencoded", c_int),
                ("set", c_uint), ("flags", c_uint)]


class CheckoutOpts(ctypes.Structure):
    _fields_ = [("only", P(c_char_p)), ("n_only", c_size), ("out_dtype", c_int), ("n_files", c_size),
                ("n_files_total", c_size), ("n_tensors", c_u64), ("weight_bytes", c_u64), ("verified", c_int)]


class WdeltaArray(ctypes.Structure):
    _fields_ = [("field", ctypes.c_char * 16), ("dtype", ctypes.c_char * 16), ("count", c_u64), ("nbytes", c_u64)]


class WdeltaTensorInfo(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("ndim", c_int), ("shape", c_u64 * MAX_DIMS), ("dtype", ctypes.c_char * 16),
                ("delta_dtype", ctypes.c_char * 16), ("base_dtype", ctypes.c_char * 16),
                ("strategy", ctypes.c_char * 16), ("options_json", c_char_p), ("n_arrays", c_size),
                ("arrays", WdeltaArray * 5), ("nbytes", c_u64)]


class WdeltaInfo(ctypes.Structure):
    _fields_ = [("path", c_char_p), ("size", c_u64), ("size_mb", c_double), ("version", c_int),
                ("parent_hash", ctypes.c_char * HEX), ("strategy", ctypes.c_char * 16), ("n_tensors", c_size),
                ("tensors", P(WdeltaTensorInfo))]


class NamedTensor(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("dtype", ctypes.c_char * 12), ("ndim", c_int), ("shape", c_u64 * MAX_DIMS),
                ("data", c_void_p), ("nbytes", c_u64)]


class GcOpts(ctypes.Structure):
    _fields_ = [("flags", c_uint), ("wait_ms", c_int)]


class GcResult(ctypes.Structure):
    _fields_ = [("n_chunks", c_u64), ("n_unreferenced", c_u64), ("unreferenced_bytes", c_u64),
                ("file_bytes_before", c_u64), ("file_bytes_after", c_u64), ("compacted", c_int),
                ("compact_needs", c_u64), ("shrink_pending", c_int)]


class RemovedInfo(ctypes.Structure):
    _fields_ = [("id", ctypes.c_char * HEX), ("kind", ctypes.c_char * 8), ("names", P(c_char_p)),
                ("n_names", c_size)]


class NameInfo(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("id", ctypes.c_char * HEX), ("kind", ctypes.c_char * 8), ("created", c_i64)]


class FsckProblem(ctypes.Structure):
    _fields_ = [("kind", c_char_p), ("chunk", ctypes.c_char * HEX), ("object", ctypes.c_char * HEX),
                ("name", c_char_p), ("where", c_char_p), ("n_uses", c_u64), ("message", c_char_p),
                ("affected", P(c_size)), ("n_affected", c_size)]


class FsckObject(ctypes.Structure):
    _fields_ = [("id", ctypes.c_char * HEX), ("kind", ctypes.c_char * 8), ("damaged", c_int)]


class FsckReport(ctypes.Structure):
    _fields_ = [("full", c_int), ("incomplete", c_int), ("n_chunks", c_u64), ("chunk_bytes", c_u64),
                ("raw_bytes", c_u64), ("n_names", c_u64), ("n_rebuilt", c_u64), ("n_objects", c_size),
                ("objects", P(FsckObject)), ("n_damaged", c_size), ("n_problems", c_size),
                ("problems", P(FsckProblem))]


def _proto(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


wd_errmsg = _proto("wd_errmsg", c_char_p)
wd_cancel_request = _proto("wd_cancel_request", None)
wd_cancel_clear = _proto("wd_cancel_clear", None)
wd_repo_discover = _proto("wd_repo_discover", c_int, P(c_void_p), c_char_p)
wd_repo_init = _proto("wd_repo_init", c_int, c_char_p)
wd_repo_open = _proto("wd_repo_open", c_int, P(c_void_p), c_char_p, c_uint)
wd_repo_close = _proto("wd_repo_close", None, c_void_p)
wd_add_base_ex = _proto("wd_add_base_ex", c_int, c_void_p, c_char_p, c_char_p, P(FolderFilter), P(Options),
                        P(WriteResult))
wd_commit = _proto("wd_commit", c_int, c_void_p, c_char_p, c_char_p, P(CommitOpts), P(Options), P(WriteResult))
wd_tag_move = _proto("wd_tag_move", c_int, c_void_p, c_char_p, c_char_p, ctypes.c_char * HEX)
wd_untag = _proto("wd_untag", c_int, c_void_p, c_char_p)
wd_resolve = _proto("wd_resolve", c_int, c_void_p, c_char_p, ctypes.c_char * HEX)
wd_checkout_ex = _proto("wd_checkout_ex", c_int, c_void_p, c_char_p, c_char_p, c_uint, P(CheckoutOpts), P(Options))
wd_log = _proto("wd_log", c_int, c_void_p, P(P(ObjectInfo)), P(c_size))
wd_log_free = _proto("wd_log_free", None, P(ObjectInfo), c_size)
wd_inspect = _proto("wd_inspect", c_int, c_void_p, c_char_p, P(P(InspectInfo)))
wd_inspect_free = _proto("wd_inspect_free", None, P(InspectInfo))
wd_model_hash = _proto("wd_model_hash", c_int, c_char_p, P(Options), ctypes.c_char * HEX)
wd_import = _proto("wd_import", c_int, c_void_p, c_char_p, c_char_p, P(Options), P(WriteResult))
wd_export = _proto("wd_export", c_int, c_void_p, c_char_p, c_char_p, P(ExportOpts), P(Options))
wd_save_delta_from_paths_ex = _proto("wd_save_delta_from_paths_ex", c_int, c_char_p, c_char_p, c_char_p,
                                     P(StrategyOpts), c_int, c_uint, ctypes.c_char * HEX, P(Options))
wd_load_delta_from_paths = _proto("wd_load_delta_from_paths", c_int, c_char_p, c_char_p, c_char_p, c_int, c_uint,
                                  P(Options))
wd_inspect_file = _proto("wd_inspect_file", c_int, P(P(WdeltaInfo)), c_char_p)
wd_inspect_file_free = _proto("wd_inspect_file_free", None, P(WdeltaInfo))
wd_save_delta = _proto("wd_save_delta", c_int, c_char_p, P(NamedTensor), c_size, P(NamedTensor), c_size,
                       P(StrategyOpts), c_int)
wd_load_delta = _proto("wd_load_delta", c_int, P(P(NamedTensor)), P(c_size), c_char_p, P(NamedTensor), c_size,
                       c_int)
wd_named_tensors_free = _proto("wd_named_tensors_free", None, P(NamedTensor), c_size)
wd_strategy_check = _proto("wd_strategy_check", c_int, P(StrategyOpts), c_char_p, c_uint)
wd_fsck = _proto("wd_fsck", c_int, c_void_p, c_uint, P(Options), P(P(FsckReport)))
wd_fsck_free = _proto("wd_fsck_free", None, P(FsckReport))
wd_rm = _proto("wd_rm", c_int, c_void_p, P(c_char_p), c_size, c_uint, P(P(RemovedInfo)), P(c_size))
wd_rm_free = _proto("wd_rm_free", None, P(RemovedInfo), c_size)
wd_names = _proto("wd_names", c_int, c_void_p, P(P(NameInfo)), P(c_size))
wd_names_free = _proto("wd_names_free", None, P(NameInfo), c_size)
wd_gc = _proto("wd_gc", c_int, c_void_p, P(GcOpts), P(GcResult))


def enc(s):
    """A path or name as the C library takes it (bytes, file-system encoding)."""
    if s is None:
        return None
    return os.fsencode(s)


def dec(b):
    return b.decode("utf-8", "surrogateescape") if b is not None else None


def last_error():
    return dec(wd_errmsg()) or "unknown error"


class _Call:
    """Runs one long library call on a thread of its own, so that the
    calling (main) thread stays in Python and gets Ctrl-C: the
    KeyboardInterrupt raises the library's cancel flag, the call stops at its
    next piece boundary through its own error path, and the interrupt is
    re-raised here once it has. A progress callback is called on that thread
    (the library calls it from the thread that made the call); if it raises,
    the call is cancelled the same way and its exception re-raised."""

    def __init__(self, progress=None):
        self.progress = progress
        self.exc = None
        self.cfn = PROGRESS_FN(self._on_progress) if progress is not None else PROGRESS_FN()

    def _on_progress(self, _ud, stage, done, total):
        if self.exc is not None:
            return
        try:
            self.progress(dec(stage), int(done), int(total))
        except BaseException as e:  # noqa: B036 - carried back to the caller
            self.exc = e
            wd_cancel_request()

    def options(self, threads=0):
        return Options(threads, 0, self.cfn, None)

    def run(self, fn, *args):
        box = {}
        done = threading.Event()

        def target():
            try:
                rc = fn(*args)
                box["rc"] = rc
                if rc != WD_OK:
                    box["msg"] = last_error()
            finally:
                done.set()

        # _thread, not threading.Thread: Thread.start() waits for the thread
        # to begin, and a Ctrl-C in that wait would leave the call running
        # unwatched. Waiting on an Event, not Thread.join, for the same reason
        # (a join that an interrupt broke off can return early on 3.11).
        interrupted = launched = False
        try:
            _thread.start_new_thread(target, ())
            launched = True
        except KeyboardInterrupt:
            if not launched:
                raise
            interrupted = True
            wd_cancel_request()
        while not done.is_set():
            try:
                done.wait()
            except KeyboardInterrupt:
                interrupted = True
                wd_cancel_request()
        if interrupted or self.exc is not None:
            wd_cancel_clear()
            if interrupted:
                raise KeyboardInterrupt
            raise self.exc
        return box["rc"], box.get("msg", "")
