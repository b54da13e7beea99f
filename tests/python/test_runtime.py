"""Long calls: progress callbacks, Ctrl-C (the library's cancel flag), no
leaked file descriptors or threads."""
import os
import signal
import threading
import time

import numpy as np
import pytest

import wdrepo
import wdrepo._lib as L
from conftest import fx


def temporaries(d):
    return [n for n in os.listdir(d) if "wdrepo-tmp" in n]


def test_progress_callback(tmp_path):
    seen = []
    wdrepo.save_delta_from_paths(tmp_path / "o.wdelta", fx("models/ft-bf16"), fx("models/base-bf16"),
                                 progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert seen and all(isinstance(s, str) and d <= t for s, d, t in seen if t)
    seen.clear()
    wdrepo.load_delta_from_paths(tmp_path / "o.wdelta", fx("models/base-bf16"),
                                 progress=lambda *a: seen.append(a))
    assert seen


def test_progress_callback_exception_cancels(tmp_path):
    def boom(stage, done, total):
        raise RuntimeError("stop here")
    with pytest.raises(RuntimeError, match="stop here"):
        wdrepo.save_delta_from_paths(tmp_path / "o.wdelta", fx("models/ft-bf16"), fx("models/base-bf16"),
                                     progress=boom)
    assert not (tmp_path / "o.wdelta").exists() and temporaries(tmp_path) == []


def test_cancel_flag_stops_at_a_piece_and_cleans_up(tmp_path):
    # The library's side of Ctrl-C: a raised flag fails the call at its first
    # piece, through its error path (no output, no temporary left).
    L.wd_cancel_request()
    try:
        with pytest.raises(wdrepo.CancelledError, match="interrupted"):
            wdrepo.save_delta_from_paths(tmp_path / "o.wdelta", fx("models/ft-bf16"), fx("models/base-bf16"))
        with pytest.raises(wdrepo.CancelledError):
            wdrepo.load_delta_from_paths(fx("wdelta/v2/sparse.wdelta"), fx("models/base-bf16"))
        repo = wdrepo.Repository.init(tmp_path / "r")
        with pytest.raises(wdrepo.CancelledError):
            repo.add_base(fx("models/base-bf16"))
    finally:
        L.wd_cancel_clear()
    assert not (tmp_path / "o.wdelta").exists() and temporaries(tmp_path) == []
    assert repo.log() == []  # nothing half-stored
    repo.add_base(fx("models/base-bf16"))  # and the next call works
    repo.close()


def test_ctrl_c_raises_keyboardinterrupt_and_cleans_up(tmp_path):
    # A real SIGINT, sent while the call runs (from its progress callback):
    # the main thread gets KeyboardInterrupt, the call is cancelled, and the
    # flag is cleared again for the next call.
    sent = []

    def interrupt(stage, done, total):
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        wdrepo.save_delta_from_paths(tmp_path / "o.wdelta", fx("models/ft-bf16"), fx("models/base-bf16"),
                                     progress=interrupt)
    assert sent and temporaries(tmp_path) == []
    wdrepo.save_delta_from_paths(tmp_path / "o.wdelta", fx("models/ft-bf16"), fx("models/base-bf16"))
    assert wdrepo.inspect(tmp_path / "o.wdelta")["n_tensors"] == 13


def _fds():
    return len(os.listdir("/proc/self/fd"))


def _threads():
    return len(os.listdir("/proc/self/task"))


def test_no_fd_or_thread_leak_after_many_calls(tmp_path):
    w = fx("wdelta/v2/int4-f32-mem.wdelta")
    a = {"x": np.ones((4, 4), np.float32)}
    b = {"x": np.zeros((4, 4), np.float32)}
    calls = [lambda: wdrepo.inspect(w),
             lambda: wdrepo.save_delta(tmp_path / "m.wdelta", a, b),
             lambda: wdrepo.load_delta(tmp_path / "m.wdelta", b),
             lambda: wdrepo.load_delta_from_paths(w, fx("models/base-f32"), verify="cached")]
    for f in calls:  # warm up: imports, caches
        f()
    fds, threads, pythreads = _fds(), _threads(), threading.active_count()
    # 1000 calls; 250 under the sanitizers, where each costs ~10x
    for i in range(250 if "LD_PRELOAD" in os.environ else 1000):
        # the calls that write (and fsync) a file or folder 1 in 10 each
        calls[3 if i % 10 == 0 else 1 if i % 10 == 5 else (i & 1) * 2]()
        if i % 97 == 0:  # errors release what they hold too
            with pytest.raises(ValueError):
                wdrepo.inspect(fx("bad/version-99.wdelta"))
    # A call's thread has signalled its end just before it exits: give the
    # last one a moment to be gone (bounded; a leak never settles).
    for _ in range(500):
        if _threads() == threads:
            break
        time.sleep(0.01)
    assert (_fds(), _threads(), threading.active_count()) == (fds, threads, pythreads)
