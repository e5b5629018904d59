"""Build kmem's optional compiled core (kmem._core) with the machine's C compiler.

Everything else is in pyproject.toml. Without a working compiler the install still succeeds:
kmem then runs on its pure-Python core, and the build says so in one line.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCES = ["csrc/module.c", "csrc/buddy.c", "csrc/slab.c", "csrc/replay.c", "csrc/parse.c",
           "csrc/arena.c", "csrc/pcp.c", "csrc/perf_data.c"]
SOURCES += ["csrc/stat.c", "csrc/frames.c"]


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed compile into one clear line instead of a failure."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # no compiler, no headers: the pure core still installs
            self._pure(error)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:
            self._pure(error)

    @staticmethod
    def _pure(error: Exception) -> None:
        print(f"kmem: the compiled core was not built ({type(error).__name__}: {error});"
              " kmem runs on its pure-Python core", file=sys.stderr)


flags = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
         "-Wno-missing-field-initializers", "-fvisibility=hidden"]
if os.environ.get("KMEM_SANITIZE"):  # make fuzz: AddressSanitizer and UBSan
    flags += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]

setup(
    ext_modules=[
        Extension("kmem._core", SOURCES, include_dirs=["csrc"], extra_compile_args=flags,
                  depends=["csrc/kmem_core.h"], optional=True)
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
