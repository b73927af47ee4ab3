"""Builds bisc's two native parts as part of an ordinary `pip install .`.

- Cython modules in bisc/_native/*.pyx, compiled by setuptools.
- The Rust crates in native-rs/, built with PyO3 by maturin; the extension
  module is taken from the wheel maturin makes and placed at bisc/_bisc_rs.

Set BISC_BUILD_RUST=0 to skip the Rust part (bisc then uses its pure-Python
or Cython paths). Without cargo on PATH the Rust part is skipped with a
warning, unless BISC_REQUIRE_NATIVE is set, which makes it an error.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()
RUST_MANIFEST = HERE / "native-rs" / "bisc-py" / "Cargo.toml"
RUST_MODULE = "bisc._bisc_rs"


class RustExtension(Extension):
    """Placeholder Extension whose build is delegated to maturin."""

    def __init__(self, name: str, manifest: Path) -> None:
        super().__init__(name, sources=[])
        self.manifest = manifest


class BuildExt(build_ext):
    def build_extension(self, ext: Extension) -> None:
        if isinstance(ext, RustExtension):
            self._build_rust(ext)
        else:
            super().build_extension(ext)

    def _build_rust(self, ext: RustExtension) -> None:
        required = bool(os.environ.get("BISC_REQUIRE_NATIVE"))
        if os.environ.get("BISC_BUILD_RUST", "1") == "0":
            print("bisc: BISC_BUILD_RUST=0, skipping the Rust extension")
            return
        if shutil.which("cargo") is None:
            message = "bisc: cargo not found; building without the Rust extension"
            if required:
                raise RuntimeError(message + " (BISC_REQUIRE_NATIVE is set)")
            print("WARNING: " + message, file=sys.stderr)
            return
        dest = Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as out:
            subprocess.check_call(
                [
                    sys.executable,
                    "-m",
                    "maturin",
                    "build",
                    "--release",
                    "--manifest-path",
                    str(ext.manifest),
                    "--interpreter",
                    sys.executable,
                    "--out",
                    out,
                ]
            )
            wheels = glob.glob(os.path.join(out, "*.whl"))
            if len(wheels) != 1:
                raise RuntimeError(f"maturin produced {len(wheels)} wheels, expected 1")
            prefix = RUST_MODULE.replace(".", "/") + "."
            with zipfile.ZipFile(wheels[0]) as wheel:
                members = [
                    m
                    for m in wheel.namelist()
                    if m.startswith(prefix) and m.endswith((".so", ".pyd", ".dylib"))
                ]
                if len(members) != 1:
                    raise RuntimeError(f"no {RUST_MODULE} extension in {wheels[0]}: {members}")
                with wheel.open(members[0]) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        print(f"bisc: Rust extension built into {dest}")


def extensions() -> list[Extension]:
    extra = [] if sys.platform == "win32" else ["-O3"]
    cython_exts = [
        Extension(
            "bisc._native." + Path(pyx).stem,
            [pyx],
            extra_compile_args=extra,
        )
        for pyx in sorted(glob.glob("bisc/_native/*.pyx"))
    ]
    compiled = cythonize(
        cython_exts,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )
    return [*compiled, RustExtension(RUST_MODULE, RUST_MANIFEST)]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
