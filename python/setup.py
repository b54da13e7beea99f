"""Bundles libwdrepo.so.0 into the package when one is built: $WDREPO_LIB,
else ../build/libwdrepo.so.0 beside this folder (make builds it). Without
one, the package loads the library that make install put in place."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithLib(build_py):
    def run(self):
        super().run()
        lib = os.environ.get("WDREPO_LIB") or os.path.join(HERE, "..", "build", "libwdrepo.so.0")
        if os.path.exists(lib):
            dst = os.path.join(self.build_lib, "wdrepo", "libwdrepo.so.0")
            shutil.copyfile(os.path.realpath(lib), dst)
            os.chmod(dst, 0o755)


setup(cmdclass={"build_py": BuildPyWithLib})
