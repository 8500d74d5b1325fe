"""Builds the ``diskfault.c`` LD_PRELOAD shim with gcc and gives the environment that loads
it into a process (see the C file for what the variables mean)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("diskfault.c")


def build(out_dir: Path) -> Path:
    """Compile the shim into ``out_dir``; gcc is required (a missing gcc fails the test)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc, "gcc is needed to build the disk-fault shim (apt-get install gcc)"
    lib = out_dir / "libdiskfault.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(lib),
                    str(SOURCE), "-ldl"], check=True, capture_output=True, text=True)
    return lib


def environment(lib: Path, call: str, nth: int, arm_file: Path) -> dict[str, str]:
    return {
        "LD_PRELOAD": str(lib),
        "DISKFAULT_CALL": call,
        "DISKFAULT_NTH": str(nth),
        "DISKFAULT_ARM_FILE": str(arm_file),
    }
