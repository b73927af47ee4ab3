"""BiscApp: the Kivy front end, wired to the core (bisc.app.Node) on one asyncio loop.

The app owns at most one Node (created when the user first creates or joins a channel, with the
display name typed on Home) and one joined channel at a time, shown through a ChannelBridge.
Screens are loaded the first time they are shown (kivy_app/screens/<name>.py + <name>.kv).
Every core call goes through `spawn`, which turns a BiscError into a message the user can read.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("KIVY_NO_ARGS", "1")  # bisc parses the command line, not Kivy
os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")  # leave the root logger alone

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.screenmanager import NoTransition, ScreenManager

from bisc.app import Channel, Node
from bisc.errors import BiscError
from bisc.paths import Paths
from bisc.settings import Settings
from bisc.ticket import BiscTicket
from kivy_app.bridge import ChannelBridge
from kivy_app.recent import RecentChannels
from kivy_app.theme import Theme
from kivy_app.widgets import BiscButton

log = logging.getLogger(__name__)

__all__ = ["BiscApp", "BiscButton", "GuiOptions", "main"]  # BiscButton: registered before widgets.kv

HERE = Path(__file__).parent
JOIN_TIMEOUT = 15.0
MESSAGE_SECONDS = 5.0


@dataclass
class GuiOptions:
    data_dir: str | None = None
    name: str | None = None  # the display name field's initial value (default: settings)
    bind: str = "0.0.0.0:0"
    audio_in: str = "mic"  # what the mic button starts: mic, tone[:HZ], a WAV file
    audio_out: str = "speaker"
    video_source: str = "camera"  # what the camera button starts: camera[:DEVICE], pattern[:WxH], a file
    theme: str | None = None  # dark or light (default: settings)


class Root(FloatLayout):  # type: ignore[misc]
    """The screens, with a message banner over them."""


class BiscApp(App):  # type: ignore[misc]
    title = "bisc"
    theme = ObjectProperty(None)
    message = StringProperty("")  # the banner: errors and notices outside Home
    busy = BooleanProperty(False)  # creating or joining
    in_call = BooleanProperty(False)
    channel_title = StringProperty("")
    bridge = ObjectProperty(None, allownone=True)
    voice_on = BooleanProperty(False)
    muted = BooleanProperty(False)
    camera_on = BooleanProperty(False)

    def __init__(self, options: GuiOptions | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options = options or GuiOptions()
        self.paths = Paths.resolve(self.options.data_dir)
        try:
            self.settings = Settings.load(self.paths.settings_file)
        except BiscError as exc:  # a broken settings file: defaults, and say so
            log.warning("%s", exc)
            self.settings = Settings()
        self.theme = Theme(self.options.theme or self.settings.theme)
        self.recent = RecentChannels(self.paths.data_dir)
        self.node: Node | None = None
        self.channel: Channel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._screens: dict[str, Any] = {}
        self._loaded_kv: set[str] = set()
        self._clear_message = Clock.create_trigger(lambda _dt: setattr(self, "message", ""), MESSAGE_SECONDS)
        self.sm: ScreenManager | None = None

    # -- Kivy ----------------------------------------------------------------
    def build(self) -> Root:
        Window.clearcolor = self.theme.bg
        self.theme.bind(bg=lambda _t, color: setattr(Window, "clearcolor", color))
        self._load_kv_file("widgets.kv")
        root = Root()
        self.sm = root.ids.screens
        self.sm.transition = NoTransition()
        self.show("home")
        return root

    def on_stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # -- lazy screens ----------------------------------------------------------
    def _load_kv_file(self, relative: str) -> None:
        if relative not in self._loaded_kv:
            Builder.load_file(str(HERE / relative))
            self._loaded_kv.add(relative)

    def view(self, name: str) -> Any:
        """The screen or sheet `name` (home, call, invite, chat), importing its module and .kv once."""
        if name not in self._screens:
            module = importlib.import_module(f"kivy_app.screens.{name}")
            self._load_kv_file(f"screens/{name}.kv")
            self._screens[name] = module.create(self)
        return self._screens[name]

    def show(self, name: str) -> None:
        screen = self.view(name)
        assert self.sm is not None
        if screen.name not in self.sm.screen_names:
            self.sm.add_widget(screen)
        self.sm.current = screen.name

    # -- errors and background work ------------------------------------------
    def notify(self, text: str) -> None:
        self.message = text
        self._clear_message()

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        on_error: Callable[[str], None] | None = None,
        what: str = "",
    ) -> asyncio.Task[Any]:
        """Run a core call on the loop; a failure becomes a readable message, never a traceback."""

        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except (BiscError, OSError, TimeoutError) as exc:
                text = _readable(exc, what)
            except Exception as exc:  # a bug: log it whole, show one line
                log.exception("%s failed", what or "background task")
                detail = f"{type(exc).__name__}: {exc}"
                detail = detail if len(detail) <= 160 else detail[:157] + "..."
                text = f"{what + ': ' if what else ''}unexpected error ({detail})"
            (on_error or self.notify)(text)
            return None

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- node and channels ---------------------------------------------------
    @property
    def display_name(self) -> str:
        return self.options.name or self.settings.display_name

    async def _node_for(self, name: str) -> Node:
        name = name.strip()
        if not name:
            raise BiscError("type your name first: the others see it")
        if self.node is not None and self.node.display_name != name and not self.node.channels:
            await self.node.close()  # the name is announced at start; a new one needs a new node
            self.node = None
        if self.node is None:
            node = Node(data_dir=self.options.data_dir, display_name=name, bind=self.options.bind)
            await node.start()
            self.node = node
            self._save_name(name)
        return self.node

    def _save_name(self, name: str) -> None:
        if name != self.settings.display_name:
            self.settings.display_name = name
            try:
                self.settings.save(self.paths.settings_file)
            except (BiscError, OSError) as exc:
                log.warning("could not save the display name: %s", exc)

    async def create_channel(self, name: str) -> Channel:
        self.busy = True
        try:
            node = await self._node_for(name)
            channel = await node.create_channel()
            self.recent.remember(channel.ticket().to_text(), "created")
        finally:
            self.busy = False
        await self._enter(channel)
        return channel

    async def join_channel(self, name: str, ticket_text: str) -> Channel:
        text = "".join(ticket_text.split())  # pasted tickets often carry line breaks
        if not text:
            raise BiscError("paste a ticket (bisc1...) to join a channel")
        ticket = BiscTicket.parse(text)  # TicketError before any networking
        self.busy = True
        try:
            node = await self._node_for(name)
            channel = await node.join(ticket, timeout=JOIN_TIMEOUT)
            self.recent.remember(text, "joined")
        finally:
            self.busy = False
        await self._enter(channel)
        return channel

    async def _enter(self, channel: Channel) -> None:
        self.channel = channel
        self.bridge = ChannelBridge(channel)
        self.bridge.start()
        self.bridge.ticket = channel.ticket().to_text()
        self.channel_title = f"Channel {channel.topic_id.hex()[:8]}"
        self.voice_on = self.muted = self.camera_on = False
        self.in_call = True
        self.show("call")
        try:
            await channel.start_video()  # receive the others' video; sending waits for the camera button
        except BiscError as exc:
            self.notify(f"Video is unavailable: {exc}")

    async def leave(self) -> None:
        channel, bridge = self.channel, self.bridge
        self.channel = None
        self.in_call = False
        if channel is not None:
            await channel.leave()
        if bridge is not None:
            bridge.stop()
        self.bridge = None
        self.show("home")

    async def refresh_ticket(self) -> str:
        if self.channel is None:
            raise BiscError("not in a channel")
        text = (await self.channel.refresh_ticket()).to_text()
        if self.bridge is not None:
            self.bridge.ticket = text
        self.recent.remember(text, "created" if self._created_here() else "joined")
        return text

    def _created_here(self) -> bool:
        if self.channel is None:
            return False
        topic = self.channel.topic_id.hex()
        return any(r.topic == topic and r.role == "created" for r in self.recent.load())

    async def send_chat(self, text: str) -> None:
        if self.channel is None or self.bridge is None:
            raise BiscError("not in a channel")
        await self.channel.send_chat(text)
        self.bridge.add_own_chat(text)

    async def toggle_mic(self) -> None:
        channel = self.channel
        if channel is None:
            return
        if channel.voice is None:
            await channel.start_voice(self.options.audio_in, self.options.audio_out)
            self.voice_on, self.muted = True, False
        else:
            channel.voice.mute(not channel.voice.muted)
            self.muted = channel.voice.muted
        if self.bridge is not None:
            self.bridge.set_own_media(muted=self.muted)

    async def toggle_camera(self) -> None:
        channel = self.channel
        if channel is None:
            return
        if self.camera_on:
            await channel.stop_camera()
            self.camera_on = False
        else:
            from bisc.media.video_endpoints import open_camera_source  # PyAV loads only when used

            source, size = await asyncio.to_thread(open_camera_source, self.options.video_source)
            await channel.start_camera(source, size=size)
            self.camera_on = True
        if self.bridge is not None:
            self.bridge.set_own_media(video=self.camera_on)

    async def shutdown(self) -> None:
        """Leave the channel and close the node (after the window closed)."""
        if self.channel is not None:
            await self.channel.leave()
        if self.bridge is not None:
            self.bridge.stop()
        if self.node is not None:
            await self.node.close()
            self.node = None


def _readable(exc: BaseException, what: str) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = "no answer in time"
    text = text[0].upper() + text[1:]
    return f"{what}: {text}" if what else text


async def run_async(options: GuiOptions) -> None:
    app = BiscApp(options)
    try:
        await app.async_run(async_lib="asyncio")
    finally:
        await app.shutdown()


def main(options: GuiOptions | None = None) -> int:
    asyncio.run(run_async(options or GuiOptions()))
    return 0
