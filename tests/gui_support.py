"""The Kivy app in a real window (a private Xvfb), driven by touch events like a user.

A pytest plugin (tests/conftest.py loads it). Kivy has one window per process, so one app runs for
the whole session on the session's asyncio loop; GUI test modules mark themselves with
`pytestmark = pytest.mark.asyncio(loop_scope="session")` and take the `gui` fixture. The display
and Kivy's variables are set only while a GUI test runs (later tests start `bisc` subprocesses,
which must not find this display). Screenshots of every screen at 1280x800 and 800x1280 go to
tests/artifacts/.

Skipped, with the reason, only when no window can be opened and CI is not set."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from kivy_app.app import BiscApp

ARTIFACTS = Path(__file__).parent / "artifacts"
SIZES = {"landscape": (1280, 800), "portrait": (800, 1280)}
_ENV_KEYS = (
    "DISPLAY",
    "KIVY_HOME",
    "KIVY_NO_ARGS",
    "KIVY_LOG_MODE",
    "KIVY_NO_FILELOG",
    "KIVY_NO_CONSOLELOG",
    "SDL_AUDIODRIVER",
)


def _no_window(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI is set but the GUI tests cannot open a window: {reason}")
    pytest.skip(f"cannot open a Kivy window: {reason}")


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: Xvfb ends with this process, never before it


def start_xvfb(size: str = "1400x1400x24") -> tuple[str, subprocess.Popen[bytes]]:
    """A private Xvfb; its display name (':N') and process."""
    if shutil.which("Xvfb") is None:
        _no_window("Xvfb is not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number.isdigit():
        _no_window("Xvfb did not start")
    return f":{number}", proc


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _ENV_KEYS}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class GuiEnv:
    """The display and Kivy's variables of the session's window."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    @property
    def display(self) -> str:
        return self.values["DISPLAY"]

    def active(self) -> contextlib.AbstractContextManager[None]:
        return _environment(self.values)


@pytest.fixture(scope="session")
def gui_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuiEnv]:
    """Kivy configured for tests (its own home, no argv, Python logging) with a window on a private Xvfb."""
    for module in ("kivy", "qrcode"):
        if importlib.util.find_spec(module) is None:
            _no_window(f"{module} is not installed (pip install -e '.[gui]')")
    display, xvfb = start_xvfb()
    env = GuiEnv(
        {
            "DISPLAY": display,
            "KIVY_HOME": str(tmp_path_factory.mktemp("kivy-home")),
            "KIVY_NO_ARGS": "1",
            "KIVY_LOG_MODE": "PYTHON",
            "KIVY_NO_FILELOG": "1",
            "KIVY_NO_CONSOLELOG": "1",
            "SDL_AUDIODRIVER": "dummy",
        }
    )
    with env.active():
        from kivy.config import Config

        Config.set("graphics", "width", str(SIZES["landscape"][0]))
        Config.set("graphics", "height", str(SIZES["landscape"][1]))
        Config.set("graphics", "resizable", "1")
        Config.set("input", "mouse", "mouse,disable_multitouch")
        from kivy.core.window import Window

        if Window is None:
            _no_window("no window provider could open a window")
    yield env
    xvfb.terminate()


@pytest.fixture
def kivy_window(gui_env: GuiEnv) -> Iterator[Any]:
    """The window, with the display set for the duration of the test."""
    with gui_env.active():
        from kivy.core.window import Window

        yield Window


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def gui_app(gui_env: GuiEnv, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BiscApp]:
    with gui_env.active():
        from kivy_app.app import BiscApp, GuiOptions

        options = GuiOptions(
            data_dir=str(tmp_path_factory.mktemp("app-node")),
            name="Ada Lovelace",
            bind="127.0.0.1:0",
            audio_in="none",
            audio_out="none",
            video_source="pattern:320x180",
            storage_dir=str(tmp_path_factory.mktemp("app-storage")),
        )
        app = BiscApp(options)
        run = asyncio.ensure_future(app.async_run(async_lib="asyncio"))
        await until(lambda: run.done() or (app.sm is not None and app.sm.current == "home"), what="the app")
        if run.done():
            run.result()  # the app failed to start: show why
    yield app
    with gui_env.active():
        app.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 10)
        await app.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def gui(gui_app: BiscApp, kivy_window: Any) -> AsyncIterator[BiscApp]:
    """The session's app, back on Home with no sheet open and no banner when the test starts."""
    await go_home(gui_app)
    gui_app.message = ""
    yield gui_app


async def until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.03)


async def frames(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(1 / 30)


async def tap(widget: Any) -> None:
    """A finger down and up on the widget's centre, through Kivy's input dispatch."""
    from kivy.tests import UnitTestTouch

    assert widget.get_root_window() is not None, f"{widget} is not on screen"
    assert widget.opacity > 0 and not widget.disabled, f"{widget} cannot be tapped"
    x, y = widget.to_window(*widget.center)
    touch = UnitTestTouch(x, y)
    touch.touch_down()
    await frames(1)
    touch.touch_up()
    await frames(2)


async def type_into(field: Any, text: str) -> None:
    await tap(field)
    assert field.focus, "the text field did not take the focus"
    field.select_all()
    field.delete_selection()
    field.insert_text(text)  # what the keyboard provider does for each key
    await frames(1)


async def press_key(window: Any, key: str) -> None:
    """A key press and release through the window, as the keyboard provider sends them."""
    from kivy.core.window import Keyboard

    code = Keyboard.keycodes[key]
    text = key if len(key) == 1 else None
    window.dispatch("on_key_down", code, 0, text, [])
    await frames(1)
    window.dispatch("on_key_up", code, 0)
    await frames(2)


def _has_size(window: Any, size: tuple[int, int]) -> Callable[[], bool]:
    return lambda: tuple(window.size) == size


async def screenshot(window: Any, name: str) -> None:
    """tests/artifacts/<name>-landscape.png and -portrait.png (the window is resized for each)."""
    ARTIFACTS.mkdir(exist_ok=True)
    for orientation, size in SIZES.items():
        window.size = size
        await until(_has_size(window, size), what=f"window size {size}")
        await frames(6)
        taken = window.screenshot(name=str(ARTIFACTS / "shot.png"))
        os.replace(taken, ARTIFACTS / f"{name}-{orientation}.png")
    window.size = SIZES["landscape"]
    await frames(4)


async def go_home(app: BiscApp) -> None:
    for name in ("invite", "files", "picker"):
        sheet = app._screens.get(name)
        if sheet is not None and sheet.get_parent_window() is not None:
            sheet.dismiss()
    if app.in_call:
        await tap(app.view("call").ids.leave_button)
    if app.sm is not None and app.sm.current == "settings":
        app.show("home")
    # Home is current and its switch is over: the ScreenManager ignores touches until then.
    await until(
        lambda: (
            app.sm is not None
            and app.sm.current == "home"
            and app.channel is None
            and not app.sm.transition.is_active
        ),
        what="home",
    )
