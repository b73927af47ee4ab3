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
from typing import TYPE_CHECKING, Any

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
from bisc.files.swarm import FileInfo
from bisc.paths import Paths
from bisc.settings import Settings
from bisc.ticket import BiscTicket
from kivy_app.bridge import ChannelBridge
from kivy_app.draw_cost import DrawCost
from kivy_app.open_folder import open_folder
from kivy_app.recent import RecentChannels
from kivy_app.theme import Theme
from kivy_app.widgets import BiscButton

if TYPE_CHECKING:
    from bisc.media.video_picker import ScreenChoice

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
    scan_source: str | None = None  # what the Scan button reads QR codes from (default: video_source)
    storage_dir: str | None = None  # where downloads go (default: settings, then the platform's downloads)


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
    screen_on = BooleanProperty(False)

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
        self.draw_cost = DrawCost()

    # -- Kivy ----------------------------------------------------------------
    def build(self) -> Root:
        Window.clearcolor = self.theme.bg
        self.theme.bind(bg=lambda _t, color: setattr(Window, "clearcolor", color))
        self._load_kv_file("widgets.kv")
        root = Root()
        self.sm = root.ids.screens
        self.sm.transition = NoTransition()
        Window.bind(on_key_down=self._on_key_down, on_request_close=self._on_request_close)
        self.draw_cost.measure(Window)
        self.show("home")
        return root

    # -- keyboard (desktop) ---------------------------------------------------
    def _on_key_down(
        self, _window: object, key: int, _scancode: int, text: str | None, modifiers: list[str]
    ) -> bool:
        """M mutes, V turns the camera on or off, Esc closes a sheet or leaves the call (never the app)."""
        if key == 27:
            self.back()
            return True
        if not self.in_call or typing_focus() or set(modifiers) & {"ctrl", "alt", "meta"}:
            return False
        if text in ("m", "M"):
            self.spawn(self.toggle_mic(), what="Microphone")
            return True
        if text in ("v", "V"):
            self.spawn(self.toggle_camera(), what="Camera")
            return True
        return False

    def _on_request_close(self, _window: object, source: str | None = None) -> bool:
        return source == "keyboard"  # Esc is handled by back(); only the window's close button quits

    def back(self) -> None:
        """Esc (and Android's back): the topmost sheet closes, else the call is left, else Settings."""
        from kivy.uix.modalview import ModalView

        sheets = [w for w in Window.children if isinstance(w, ModalView)]
        if sheets:  # children[0] is the topmost: a sheet opened from a sheet closes first
            sheets[0].dismiss()
            return
        if self.sm is not None and self.sm.current == "call":
            call = self.view("call")
            if call.chat_open:
                call.set_chat(False)
            else:
                self.spawn(self.leave(), what="Leaving")
        elif self.sm is not None and self.sm.current not in ("home", "call"):
            self.show("call" if self.in_call else "home")

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
        from kivy_app.prefs import check_display_name

        name = check_display_name(name)  # the same rules as in Settings
        if self.node is not None and self.node.display_name != name and not self.node.channels:
            await self.node.close()  # the name is announced at start; a new one needs a new node
            self.node = None
        if self.node is None:
            node = Node(
                data_dir=self.options.data_dir,
                display_name=name,
                bind=self.options.bind,
                storage_dir=self.options.storage_dir or self.settings.storage_dir or None,
            )
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

    async def reopen_channel(self, name: str, ticket_text: str) -> Channel:
        """A recent channel: back in through its peers, or opened alone when none of them answers."""
        ticket = BiscTicket.parse(ticket_text)
        self.busy = True
        try:
            node = await self._node_for(name)
            channel = await node.reopen(ticket, timeout=JOIN_TIMEOUT)
            self._remember(channel.topic_id.hex(), channel.ticket().to_text())
        finally:
            self.busy = False
        await self._enter(channel)
        if not channel.connected_peers:
            self.notify("Nobody else is here yet: invite them with a fresh ticket")
        return channel

    def _remember(self, topic: str, ticket: str) -> None:
        """Keep a recent channel's newest ticket (peers in it that are online let us back in)."""
        role = next((r.role for r in self.recent.load() if r.topic == topic), "joined")
        try:
            self.recent.remember(ticket, role)
        except (BiscError, OSError) as exc:
            log.warning("could not save the recent channel: %s", exc)

    async def _enter(self, channel: Channel) -> None:
        self.channel = channel
        self.bridge = ChannelBridge(channel)
        self.bridge.start()
        self.bridge.ticket = channel.ticket().to_text()
        topic = channel.topic_id.hex()
        self.bridge.bind(ticket=lambda _bridge, text: self._remember(topic, text))
        self.channel_title = f"Channel {channel.topic_id.hex()[:8]}"
        self.voice_on = self.muted = self.camera_on = self.screen_on = False
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
            # Who is here now: the ticket that gets us back in from Recent.
            self._remember(channel.topic_id.hex(), channel.ticket().to_text())
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
            self.bridge.ticket = text  # also saved for Recent (bound in _enter)
        return text

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
            chosen = await self.voice_options()
            await channel.start_voice(self.options.audio_in, self.options.audio_out, **chosen)
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

            source, size = await asyncio.to_thread(open_camera_source, self.camera_source())
            await channel.start_camera(source, size=size, quality=self.settings.video_quality)
            self.camera_on = True
        if self.bridge is not None:
            self.bridge.set_own_media(video=self.camera_on)

    async def start_screen_share(self, choice: ScreenChoice) -> None:
        """Share a display or window picked in the picker (opened again on its capture thread)."""
        channel = self.channel
        if channel is None:
            raise BiscError("not in a channel")
        probe = await asyncio.to_thread(choice.open)  # its size, and a clear error now rather than later
        size = (probe.width, probe.height)
        await asyncio.to_thread(probe.close)
        await channel.start_screen(choice.open, size=size, quality=self.settings.video_quality)
        self.screen_on = True
        if self.bridge is not None:
            self.bridge.set_own_media(screen=True)

    async def stop_screen_share(self) -> None:
        if self.channel is not None:
            await self.channel.stop_screen()
        self.screen_on = False
        if self.bridge is not None:
            self.bridge.set_own_media(screen=False)

    # -- files -------------------------------------------------------------------
    def _in_channel(self) -> tuple[Channel, ChannelBridge]:
        if self.channel is None or self.bridge is None:
            raise BiscError("not in a channel")
        return self.channel, self.bridge

    async def share_file(
        self, path: str | Path, progress: Callable[[int, int], None] | None = None
    ) -> FileInfo:
        """Hash `path` (progress(done, total) meanwhile) and announce it; the catalog lists it as ours."""
        channel, bridge = self._in_channel()
        target = Path(path).expanduser()
        try:
            info = await channel.share(target, progress)
        except FileNotFoundError:
            raise BiscError(f"{target} no longer exists") from None
        except OSError as exc:
            raise BiscError(f"cannot read {target}: {exc.strerror or exc}") from None
        bridge.refresh_files()
        return info

    async def download_file(self, file_hash: str) -> None:
        """Start, resume or retry a download into the node's storage dir; the bridge shows its progress."""
        channel, bridge = self._in_channel()
        bridge.track_download(channel.download(file_hash))

    async def cancel_download(self, file_hash: str) -> None:
        """Stop a download; its verified chunks stay, so a later download_file resumes it."""
        channel, bridge = self._in_channel()
        handle = channel.download(file_hash)  # the running download's own handle
        handle.cancel()
        bridge.track_download(handle)

    async def open_file_folder(self, path: str) -> None:
        """The folder holding a downloaded or shared file, in the platform's file manager."""
        if not path:
            raise BiscError("this file has no place on disk yet")
        await open_folder(Path(path).parent)

    async def shutdown(self) -> None:
        """Leave the channel and close the node (after the window closed)."""
        if self.channel is not None:
            await self.channel.leave()
        if self.bridge is not None:
            self.bridge.stop()
        if self.node is not None:
            await self.node.close()
            self.node = None

    # -- settings ------------------------------------------------------------
    def open_settings(self) -> None:
        self.show("settings")

    def close_settings(self) -> None:
        self.show("call" if self.in_call else "home")

    def settings_problem(self) -> str:
        """Why the settings file on disk cannot be read ("" when it can, or does not exist yet); the app
        then runs on the defaults (or what was changed since), and saving replaces the file."""
        try:
            Settings.load(self.paths.settings_file)
        except BiscError as exc:
            return str(exc)
        return ""

    def save_settings(self, **changes: str) -> None:
        """Change settings, apply them (the theme: live) and save atomically.

        SettingsError, with nothing changed or saved, when a value is invalid or the file cannot be
        written. A file that failed to load is kept beside the new one (settings.toml.broken)."""
        import dataclasses
        import shutil

        from bisc.errors import SettingsError

        updated = dataclasses.replace(self.settings, **changes)
        updated.validate()
        answering = "storage_dir" in changes and self._storage_question_open()
        if updated == self.settings and not answering:  # answering writes the file even for the default
            return
        target = self.paths.settings_file
        try:
            if self.settings_problem() and target.exists():
                shutil.copy2(target, target.with_name(target.name + ".broken"))
            updated.save(target)
        except OSError as exc:
            raise SettingsError(f"Could not save the settings to {target}: {exc.strerror or exc}") from None
        self.settings = updated
        self._storage_question = self._storage_question_open() and not answering
        if self.theme.mode != updated.theme:
            self.theme.mode = updated.theme

    def _storage_question_open(self) -> bool:
        asked: bool | None = getattr(self, "_storage_question", None)
        if asked is None:  # decided once, at start: a settings file written later does not answer it
            from kivy_app.prefs import needs_storage_question

            asked = needs_storage_question(self.paths)
            self._storage_question = asked
        return asked

    def storage_question_pending(self) -> bool:
        """First run: Home asks where downloads go until this is answered (then never again)."""
        return self._storage_question_open()

    def answer_storage_question(self, folder: str) -> None:
        """Check `folder` (SettingsError with the reason) and save it as the downloads folder."""
        from kivy_app.prefs import check_storage_dir

        self.save_settings(storage_dir=str(check_storage_dir(folder)))

    async def voice_options(self) -> dict[str, Any]:
        """start_voice's devices and quality from Settings. GuiOptions.audio_in/out still win when
        they name something other than the mic or the speaker (a tone, a WAV file, none)."""
        from functools import partial

        from bisc.app.audio_check import audio_device_spec, in_audio_thread
        from kivy_app.prefs import voice_quality

        chosen: dict[str, Any] = {"quality": voice_quality(self.settings.audio_quality)}
        wanted = (
            ("input_device", self.options.audio_in == "mic", self.settings.audio_input_device, False),
            ("output_device", self.options.audio_out == "speaker", self.settings.audio_output_device, True),
        )
        for key, applies, name, output in wanted:
            if applies and name:
                chosen[key], note = await in_audio_thread(partial(audio_device_spec, name, output=output))
                if note:
                    self.notify(note)
        return chosen

    def camera_source(self) -> str:
        """What the camera button opens: the camera chosen in Settings, unless GuiOptions names another."""
        if self.options.video_source == "camera" and self.settings.camera_device:
            return f"camera:{self.settings.camera_device}"
        return self.options.video_source


def typing_focus() -> bool:
    """Whether a text field has the keyboard (then M and V are letters, not shortcuts)."""
    from kivy.uix.behaviors.focus import FocusBehavior

    return any(getattr(w, "focus", False) for w in FocusBehavior._keyboards.values() if w is not None)


def _readable(exc: BaseException, what: str) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = "no answer in time"
    if what and text.lower().startswith(what.lower() + ":"):  # "could not join: ..." under "Could not join"
        text = text[len(what) + 1 :].strip() or text
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
