"""Show a folder in the platform's file manager: xdg-open (Linux, BSD), open (macOS), Explorer (Windows).

One small function so the UI never deals with platforms; every failure is a BiscError with a
sentence the user can read (no opener installed, the opener refused, the folder is gone)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

from bisc.errors import BiscError

LAUNCH_SECONDS = 5.0  # an opener still running by then has started the file manager (some wait for it)


def opener() -> str:
    """The command that opens a folder on this platform (not used on Windows)."""
    return "open" if sys.platform == "darwin" else "xdg-open"


async def open_folder(folder: str | Path) -> None:
    """Open `folder` in the file manager; BiscError with a readable reason if that is not possible."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BiscError(f"{folder} no longer exists")
    if sys.platform == "win32":
        try:
            await asyncio.to_thread(os.startfile, folder)
        except OSError as exc:
            raise BiscError(f"Windows could not open {folder}: {exc.strerror or exc}") from None
        return
    command = opener()
    program = shutil.which(command)
    if program is None:
        hint = " (install xdg-utils)" if command == "xdg-open" else ""
        raise BiscError(f"there is no {command} on this system to open a file manager with{hint}")
    try:
        proc = await asyncio.create_subprocess_exec(
            program,
            str(folder),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise BiscError(f"could not run {command}: {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(LAUNCH_SECONDS):
            _, err = await proc.communicate()
    except TimeoutError:
        return  # still running: it opened the folder and stays with the file manager
    if proc.returncode:
        lines = err.decode(errors="replace").strip().splitlines()
        detail = lines[-1] if lines else f"it exited with status {proc.returncode}"
        raise BiscError(f"the file manager did not open {folder} ({command}: {detail})")
