"""make install and pip install --no-build-isolation ./python give a
package that Debian's python3 imports and that works (not under the
sanitizer build, whose library needs the ASan runtime preloaded)."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, fx

LIB = os.environ.get("WDREPO_LIB", "")
pytestmark = pytest.mark.skipif("LD_PRELOAD" in os.environ, reason="sanitizer build")

PROBE = ("import wdrepo, sys; i = wdrepo.inspect(sys.argv[1]); "
         "print(wdrepo.__file__); print(wdrepo._lib.lib._name); print(i['parent_hash'])")


def run_clean(py, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("WDREPO_LIB", "PYTHONPATH", "LD_LIBRARY_PATH")}
    env.update(env_extra or {})
    r = subprocess.run([py] + list(args), capture_output=True, text=True, env=env, cwd="/")
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_make_install(tmp_path):
    build = os.path.relpath(os.path.dirname(LIB), ROOT)
    pfx = tmp_path / "pfx"
    run_clean("make", "-s", "-C", ROOT, "install", "PREFIX=%s" % pfx, "BUILD=%s" % build)
    lib = pfx / "lib"
    assert os.readlink(lib / "libwdrepo.so.0") == "libwdrepo.so.0.1.0" and (lib / "libwdrepo.a").exists()
    pc = (lib / "pkgconfig" / "wdrepo.pc").read_text()
    assert "-lwdrepo" in pc
    site = lib / ("python%d.%d" % sys.version_info[:2]) / "dist-packages"
    out = run_clean("/usr/bin/python3", "-c", PROBE, fx("wdelta/v2/sparse.wdelta"),
                    env_extra={"PYTHONPATH": str(site)}).split("\n")
    assert out[0].startswith(str(site)) and out[1] == str(lib / "libwdrepo.so.0")
    assert out[2] == "0c18befee99d2eddfd19ddecc2f9e1bf33912a7a307596840a3d940a65b73071"
    run_clean("make", "-s", "-C", ROOT, "uninstall", "PREFIX=%s" % pfx, "BUILD=%s" % build)
    assert not (lib / "libwdrepo.so.0").exists() and not (site / "wdrepo").exists()


def test_pip_install_in_venv(tmp_path):
    src = tmp_path / "src"
    subprocess.run(["cp", "-r", os.path.join(ROOT, "python"), str(src)], check=True)
    venv = tmp_path / "venv"
    run_clean("/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv))
    run_clean(str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--no-build-isolation", str(src),
              env_extra={"WDREPO_LIB": LIB})
    out = run_clean(str(venv / "bin" / "python"), "-c", PROBE, fx("wdelta/v2/sparse.wdelta")).split("\n")
    assert out[0].startswith(str(venv)) and out[1].startswith(str(venv))  # the bundled copy of the library
    assert out[2] == "0c18befee99d2eddfd19ddecc2f9e1bf33912a7a307596840a3d940a65b73071"
