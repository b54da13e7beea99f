"""Exceptions: each library status code maps to one class, which is also the
built-in exception deltatensors raises for that case (ValueError for bad or
mismatched input, FileNotFoundError for a missing path, KeyError for a
tensor missing from the base), so code that catches those keeps working."""
from . import _lib as L


class WdrepoError(Exception):
    """Base of every error the library reports; .code is its WD_E* status."""
    code = L.WD_ERROR


class UsageError(WdrepoError, ValueError):
    code = L.WD_EUSAGE


class NotFoundError(WdrepoError, FileNotFoundError):
    code = L.WD_ENOTFOUND


class AmbiguousError(WdrepoError, ValueError):
    code = L.WD_EAMBIGUOUS


class BadInputError(WdrepoError, ValueError):
    code = L.WD_EBADINPUT


class CorruptError(WdrepoError, ValueError):
    code = L.WD_ECORRUPT


class IOFailure(WdrepoError, OSError):
    code = L.WD_EIO


class OutOfMemory(WdrepoError, MemoryError):
    code = L.WD_ENOMEM


class BusyError(WdrepoError, TimeoutError):
    code = L.WD_EBUSY


class ExistsError(WdrepoError, FileExistsError):
    code = L.WD_EEXISTS


class MismatchError(WdrepoError, ValueError):
    code = L.WD_EMISMATCH


class MissingTensorError(WdrepoError, KeyError):
    """A tensor the .wdelta names is not in the base (deltatensors: KeyError)."""
    code = L.WD_EMISMATCH

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CancelledError(WdrepoError):
    code = L.WD_ECANCELLED


_BY_CODE = {c.code: c for c in (UsageError, NotFoundError, AmbiguousError, BadInputError, CorruptError, IOFailure,
                                OutOfMemory, BusyError, ExistsError, MismatchError, CancelledError)}

# The library's messages are lower-case; deltatensors' users match on these
# phrases as deltatensors spells them.
_PHRASES = (("unknown strategy", "Unknown strategy"), ("key mismatch", "Key mismatch"),
            ("shape mismatch", "Shape mismatch"), ("unsupported .wdelta version", "Unsupported .wdelta version"),
            ("checksum mismatch", "Checksum mismatch"))


def make(rc, msg):
    """The exception for status rc with the library's one-line message."""
    for low, up in _PHRASES:
        msg = msg.replace(low, up)
    cls = _BY_CODE.get(rc, WdrepoError)
    if rc == L.WD_EMISMATCH and msg.startswith("wrong base"):
        if " is not in " in msg or " is not among " in msg:
            cls = MissingTensorError
            msg = "Tensor not found in base model: " + msg
        elif " shape " in msg:
            msg = "Shape mismatch: " + msg
        else:
            msg = "Base model hash mismatch: " + msg
    e = cls(msg)
    e.code = rc
    return e


def check(rc, msg=None):
    if rc != L.WD_OK:
        raise make(rc, msg if msg is not None else L.last_error())
