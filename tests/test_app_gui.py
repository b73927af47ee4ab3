"""The Kivy app in a real window (a private Xvfb), driven by touch events like a user.

One app runs for the whole module (Kivy has one window per process) on the module's asyncio loop;
the other peer is a headless Node on the same loop with its own data dir. Screenshots of every
screen at 1280x800 and 800x1280 go to tests/artifacts/.

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

from bisc.app import Node

if TYPE_CHECKING:
    from kivy_app.app import BiscApp

pytestmark = pytest.mark.asyncio(loop_scope="module")

ARTIFACTS = Path(__file__).parent / "artifacts"
SIZES = {"landscape": (1280, 800), "portrait": (800, 1280)}


def _no_window(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI is set but the GUI tests cannot open a window: {reason}")
    pytest.skip(f"cannot open a Kivy window: {reason}")


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: Xvfb ends with this process, never before it


def _start_xvfb() -> str:
    """A private Xvfb large enough for both orientations; its display name (':N')."""
    if shutil.which("Xvfb") is None:
        _no_window("Xvfb is not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1400x1400x24", "-nolisten", "tcp", "-noreset"],
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
    return f":{number}"


@pytest.fixture(scope="module")
def kivy_window(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Kivy configured for tests (its own home, no argv, Python logging), on a private Xvfb."""
    for module in ("kivy", "qrcode"):
        if importlib.util.find_spec(module) is None:
            _no_window(f"{module} is not installed (pip install -e '.[gui]')")
    # Restored afterwards: later tests start `bisc` subprocesses, which must not find this display.
    saved = {
        k: os.environ.get(k)
        for k in (
            "DISPLAY",
            "KIVY_HOME",
            "KIVY_NO_ARGS",
            "KIVY_LOG_MODE",
            "KIVY_NO_FILELOG",
            "KIVY_NO_CONSOLELOG",
            "SDL_AUDIODRIVER",
        )
    }
    os.environ["DISPLAY"] = _start_xvfb()
    os.environ.update(
        KIVY_HOME=str(tmp_path_factory.mktemp("kivy-home")),
        KIVY_NO_ARGS="1",
        KIVY_LOG_MODE="PYTHON",
        KIVY_NO_FILELOG="1",
        KIVY_NO_CONSOLELOG="1",
        SDL_AUDIODRIVER="dummy",
    )
    from kivy.config import Config

    Config.set("graphics", "width", str(SIZES["landscape"][0]))
    Config.set("graphics", "height", str(SIZES["landscape"][1]))
    Config.set("graphics", "resizable", "1")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    from kivy.core.window import Window

    if Window is None:
        _no_window("no window provider could open a window")
    yield Window
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gui(kivy_window: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BiscApp]:
    from kivy_app.app import BiscApp, GuiOptions

    options = GuiOptions(
        data_dir=str(tmp_path_factory.mktemp("app-node")),
        name="Ada Lovelace",
        bind="127.0.0.1:0",
        audio_in="none",
        audio_out="none",
        video_source="pattern:320x180",
    )
    app = BiscApp(options)
    run = asyncio.ensure_future(app.async_run(async_lib="asyncio"))
    await until(lambda: run.done() or (app.sm is not None and app.sm.current == "home"), what="the app")
    if run.done():
        run.result()  # the app failed to start: show why
    yield app
    app.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(run, 10)
    await app.shutdown()


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
    invite = app._screens.get("invite")
    if invite is not None and invite.get_parent_window() is not None:
        invite.dismiss()
    if app.in_call:
        await tap(app.view("call").ids.leave_button)
    await until(lambda: app.sm is not None and app.sm.current == "home" and app.channel is None, what="home")


async def test_home_screenshot(gui: BiscApp, kivy_window: Any) -> None:
    home = gui.view("home")
    assert home.ids.name_input.text == "Ada Lovelace"
    await screenshot(kivy_window, "home")


async def test_bad_ticket_shows_an_error_on_home(gui: BiscApp, kivy_window: Any) -> None:
    await go_home(gui)
    home = gui.view("home")
    await type_into(home.ids.ticket_input, "bisc1thisisnotaticket")
    await tap(home.ids.join_button)
    await until(lambda: home.error, what="an error on Home")
    assert home.error.startswith("Could not join: "), home.error
    assert "Traceback" not in home.error
    assert home.ids.error_label.opacity == 1
    assert gui.sm is not None and gui.sm.current == "home"
    await screenshot(kivy_window, "home-bad-ticket")
    await type_into(home.ids.ticket_input, "")


async def test_create_channel_shows_ticket_and_qr(gui: BiscApp, kivy_window: Any) -> None:
    from kivy.core.clipboard import Clipboard

    from bisc.ticket import BiscTicket

    await go_home(gui)
    home = gui.view("home")
    await tap(home.ids.create_button)
    await until(
        lambda: gui.in_call and gui.sm is not None and gui.sm.current == "call", what="the call screen"
    )
    assert gui.channel is not None
    call = gui.view("call")
    await until(lambda: len(call.tiles) == 1, what="my own tile")
    await screenshot(kivy_window, "call-alone")

    await tap(call.ids.invite_button)
    sheet = gui.view("invite")
    await until(lambda: sheet.qr is not None, what="the QR texture")
    ticket = BiscTicket.parse(sheet.ids.ticket_text.text)
    assert ticket.topic_id == gui.channel.topic_id
    assert sheet.qr.size[0] >= 21 * 4 and sheet.ids.qr_image.texture is sheet.qr
    await screenshot(kivy_window, "invite")
    await tap(sheet.ids.copy_button)
    assert "copied" in sheet.status
    assert Clipboard.paste() == sheet.ticket
    await tap(sheet.ids.refresh_button)
    await until(lambda: "fresh" in sheet.status, what="a refreshed ticket")
    await tap(sheet.ids.close_button)
    await until(lambda: sheet.get_parent_window() is None, what="the sheet to close")
    await go_home(gui)
    await until(lambda: len(home.recent) >= 1, what="the channel among the recent ones")
    assert home.recent[0]["topic"] == ticket.topic_id.hex()
    assert len(home.ids.recent_list.children) == len(home.recent)
    assert not gui.message, gui.message  # no error banner
    await screenshot(kivy_window, "home-recent")


async def test_call_with_a_headless_peer(gui: BiscApp, kivy_window: Any, tmp_path: Path) -> None:
    from bisc.app import ChatReceived
    from bisc.media.video_endpoints import open_camera_source

    await go_home(gui)
    await tap(gui.view("home").ids.create_button)
    await until(lambda: gui.channel is not None and gui.in_call, what="a new channel")
    assert gui.channel is not None and gui.bridge is not None
    ticket = gui.channel.ticket().to_text()
    call = gui.view("call")

    async with Node(data_dir=tmp_path / "bob", display_name="Bob Builder", bind="127.0.0.1:0") as bob:
        channel = await bob.join(ticket)
        await until(lambda: len(call.tiles) == 2, timeout=15, what="Bob's tile")
        bob_key = str(bob.identity.endpoint_id)
        assert call.tiles[bob_key].name == "Bob Builder"
        assert call.tiles[bob_key].initials == "BB"
        assert "2 in the call" in call.ids.member_count.text

        # Bob sends the test pattern as his camera: his tile becomes a live texture.
        source, size = await asyncio.to_thread(open_camera_source, "pattern:320x180")
        await channel.start_camera(source, size=size)
        await until(lambda: call.tiles[bob_key].texture is not None, timeout=15, what="Bob's video")
        assert tuple(call.tiles[bob_key].texture.size) == (320, 180)

        # Chat from the app (typed and sent by touch) reaches Bob; Bob's reaches the app.
        received: list[str] = []

        async def read_bob() -> None:
            async for event in channel.events():
                if isinstance(event, ChatReceived):
                    received.append(event.text)

        reader = asyncio.ensure_future(read_bob())
        await channel.send_chat("hello from Bob")
        await until(lambda: call.unread == 1, what="an unread chat badge")
        assert call.ids.chat_button.text == "Chat (1)"
        await tap(call.ids.chat_button)
        panel = gui.view("chat")
        await until(lambda: len(panel.ids.list.children) == 1, what="Bob's message in the panel")
        await type_into(panel.ids.input, "hello from Ada")
        await tap(panel.ids.send_button)
        await until(lambda: received == ["hello from Ada"], timeout=10, what="Ada's message at Bob")
        texts = [w.text for w in reversed(panel.ids.list.children)]
        assert texts == ["hello from Bob", "hello from Ada"]
        assert call.unread == 0
        await screenshot(kivy_window, "call-chat")
        await tap(panel.ids.close_button)
        await until(lambda: not call.chat_open, what="the chat panel to close")

        assert not gui.message, gui.message
        await screenshot(kivy_window, "call-video")
        await channel.leave()
        reader.cancel()
        await until(lambda: len(call.tiles) == 1, timeout=10, what="Bob's tile to go")
    await go_home(gui)
