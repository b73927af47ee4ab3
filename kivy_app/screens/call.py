"""The call: a responsive grid of tiles (video, or initials), speaking and mute marks, the controls bar.

A screen share gets a tile of its own and comes up large (the stage) with the others in a strip; a
tap on any tile focuses it, a tap on the focused one puts it back in the grid.

Video: every frame tick the screen reads `bridge.frames()` (the newest picture per peer) and a tile
uploads a texture only when that picture's version changed; the decoder's older pictures are
never queued (newest wins)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from kivy.clock import Clock
from kivy.graphics.texture import Texture
from kivy.properties import BooleanProperty, ColorProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.screenmanager import Screen

from bisc.media.video_types import DecodedFrame
from kivy_app.bridge import screen_key

if TYPE_CHECKING:
    from kivy_app.app import BiscApp

VIDEO_FPS = 30
MAX_VIDEO_INTERVAL = 0.5  # seconds: even a very slow renderer shows two pictures a second
TILE_ASPECT = 16 / 9


def best_columns(count: int, width: float, height: float, aspect: float = TILE_ASPECT) -> int:
    """The column count that makes `count` tiles of `aspect` as large as possible in width x height."""
    if count <= 1 or width <= 0 or height <= 0:
        return 1
    best, best_area = 1, -1.0
    for cols in range(1, count + 1):
        rows = math.ceil(count / cols)
        tile_w = min(width / cols, height / rows * aspect)
        if tile_w * tile_w / aspect > best_area + 1e-6:
            best, best_area = cols, tile_w * tile_w / aspect
    return best


def tile_infos(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tiles of the call: one per member (camera or initials), plus one per screen share."""
    tiles: list[dict[str, Any]] = []
    for info in members:
        tiles.append(info | {"is_screen": False})
        if info["screen"]:
            owner = "Your" if info["me"] else f"{info['name']}'s"
            share = {"key": screen_key(info["key"]), "name": f"{owner} screen", "is_screen": True}
            tiles.append(info | share)
    return tiles


class TileBadge(Label):  # type: ignore[misc]
    """A small label on a tile, on a rounded pill of colour `bg` (call.kv)."""

    bg = ColorProperty((0.0, 0.0, 0.0, 0.0))


class PeerTile(ButtonBehavior, FloatLayout):  # type: ignore[misc]
    """A member's camera (or initials), or a screen share; a tap focuses it (tap again: back to the grid)."""

    key = StringProperty("")
    name = StringProperty("")
    initials = StringProperty("")
    me = BooleanProperty(False)
    muted = BooleanProperty(False)
    speaking = BooleanProperty(False)
    video = BooleanProperty(False)  # the peer says its camera is on (a screen tile: the share is on)
    sharing = BooleanProperty(False)  # the peer shares a screen (the badge on its camera tile)
    is_screen = BooleanProperty(False)
    quality = StringProperty("")  # "", good, fair, poor: the link to this peer
    focused = BooleanProperty(False)
    texture = ObjectProperty(None, allownone=True)
    version: Any = None

    def update(self, info: dict[str, Any]) -> None:
        self.key = info["key"]
        self.name = info["name"]
        self.initials = info["initials"]
        self.me = info["me"]
        self.is_screen = info["is_screen"]
        self.muted = info["muted"] and not self.is_screen
        self.speaking = info["speaking"] and not self.is_screen
        self.video = info["screen"] if self.is_screen else info["video"]
        self.sharing = info["screen"] and not self.is_screen
        self.quality = "" if info["me"] or self.is_screen else info.get("quality", "")

    def show_frame(self, version: Any, frame: DecodedFrame) -> None:
        if version == self.version:
            return
        self.version = version
        size = (frame.width, frame.height)
        texture = self.texture
        if texture is None or tuple(texture.size) != size:
            texture = Texture.create(size=size, colorfmt="rgb")
            texture.flip_vertical()  # decoded rows go top-down
        data = np.ascontiguousarray(frame.data)
        from time import monotonic  # imported here: this method is the GUI bench's only hook in the module

        started = monotonic()
        texture.blit_buffer(data.tobytes(), colorfmt="rgb", bufferfmt="ubyte")
        done = monotonic()
        # Always on and bounded: (uploaded at, decoded -> uploaded, upload cost) in seconds, per tile;
        # `bisc bench --suite gui` drains it.
        log = getattr(self, "upload_log", None)
        if log is None:
            from collections import deque

            log = self.upload_log = deque(maxlen=256)
        log.append((done, done - frame.decoded_at, done - started))
        if texture is self.texture:
            self.canvas.ask_update()
            self.ids.video.canvas.ask_update()
        else:
            self.texture = texture

    def clear_video(self) -> None:
        self.version = None
        self.texture = None


class TileGrid(GridLayout):  # type: ignore[misc]
    """Columns follow the tile count and the space: wide screens get rows, tall ones columns."""

    def on_size(self, *_args: object) -> None:
        self.relayout()

    def relayout(self) -> None:
        self.cols = best_columns(len(self.children), self.width, self.height)


class CallScreen(Screen):  # type: ignore[misc]
    chat_open = BooleanProperty(False)
    wide = BooleanProperty(True)  # room for the chat panel beside the tiles
    unread = NumericProperty(0)
    member_count = NumericProperty(1)
    focused = StringProperty("")  # the tile shown large ("": all in the grid)
    tile_count = NumericProperty(0)

    def __init__(self, app: BiscApp, **kwargs: Any) -> None:
        self.app = app
        self.tiles: dict[str, PeerTile] = {}
        self._unfocused: set[str] = set()  # screen shares the user put back in the grid
        self._bridge: Any = None
        self._video_event: Any = None
        super().__init__(name="call", **kwargs)
        app.bind(bridge=self._on_bridge)
        self._on_bridge(app, app.bridge)

    def on_size(self, *_args: object) -> None:
        self.wide = self.width >= self.app.theme.panel_width * 2.4

    # -- bridge -> tiles -------------------------------------------------------
    def _on_bridge(self, _app: object, bridge: Any) -> None:
        if self._bridge is not None:
            self._bridge.unbind(members=self._on_members, unread=self._on_unread)
        self._bridge = bridge
        self.set_chat(False)
        for tile in list(self.tiles.values()):
            if tile.parent is not None:
                tile.parent.remove_widget(tile)
        self.tiles.clear()
        self._unfocused.clear()
        self.focused = ""
        if bridge is not None:
            bridge.bind(members=self._on_members, unread=self._on_unread)
            self._on_members(bridge, bridge.members)

    def _on_unread(self, _bridge: object, count: int) -> None:
        self.unread = count

    def _on_members(self, _bridge: object, members: list[dict[str, Any]]) -> None:
        infos = tile_infos(members)
        wanted = {t["key"] for t in infos}
        for key in [k for k in self.tiles if k not in wanted]:
            tile = self.tiles.pop(key)
            if tile.parent is not None:
                tile.parent.remove_widget(tile)
        self._unfocused &= wanted
        for info in infos:
            tile = self.tiles.get(info["key"])
            if tile is None:
                tile = PeerTile()
                tile.bind(on_release=lambda t: self.toggle_focus(t.key))
                self.tiles[info["key"]] = tile
                self.ids.grid.add_widget(tile)
            tile.update(info)
        self.member_count = len(members)
        if self.focused not in self.tiles:
            self.focused = ""
        if not self.focused:  # a screen share comes up large unless the user put it back
            shares = [t["key"] for t in infos if t["is_screen"] and not t["me"]]
            shares = [key for key in shares if key not in self._unfocused]
            if shares:
                self.focused = shares[-1]
        self._place()

    def toggle_focus(self, key: str) -> None:
        """Tap a tile: it fills the stage and the others make a strip; tap it again to go back."""
        if self.focused == key:
            self._unfocused.add(key)
            self.focused = ""
        elif key in self.tiles:
            self.focused = key
        self._place()

    def _place(self) -> None:
        # ids are weak proxies: compare (and re-parent into) the widgets themselves
        grid, stage = self.ids.grid.__self__, self.ids.stage.__self__
        for key, tile in self.tiles.items():
            tile.focused = key == self.focused
            target = stage if tile.focused else grid
            if tile.parent is not target:
                if tile.parent is not None:
                    tile.parent.remove_widget(tile)
                target.add_widget(tile)
        self.tile_count = len(self.tiles)
        grid.relayout()

    # -- video ---------------------------------------------------------------
    def on_enter(self, *_args: object) -> None:
        if self._video_event is None:
            self._video_event = Clock.schedule_once(self._poll_video, 1 / VIDEO_FPS)

    def on_leave(self, *_args: object) -> None:
        if self._video_event is not None:
            self._video_event.cancel()
            self._video_event = None

    def _poll_video(self, _dt: float) -> None:
        # Every new picture costs a redraw, and a redraw blocks the loop the network also runs on
        # for as long as the buffer swap takes (software GL: a tenth of a second or more). So the
        # pictures come at most as often as keeps drawing under a third of the time.
        interval = min(MAX_VIDEO_INTERVAL, max(1 / VIDEO_FPS, 3 * self.app.draw_cost.value))
        self._video_event = Clock.schedule_once(self._poll_video, interval)
        if self._bridge is None:
            return
        frames = self._bridge.frames()
        for key, tile in self.tiles.items():
            got = frames.get(key)
            if got is not None:
                tile.show_frame(*got)
            elif tile.texture is not None:
                tile.clear_video()

    # -- controls ------------------------------------------------------------
    def toggle_mic(self) -> None:
        self.app.spawn(self.app.toggle_mic(), what="Microphone")

    def toggle_camera(self) -> None:
        self.app.spawn(self.app.toggle_camera(), what="Camera")

    def share_screen(self) -> None:
        """Open the picker (displays and windows); while sharing, the button stops the share."""
        if self.app.screen_on:
            self.app.spawn(self.app.stop_screen_share(), what="Screen sharing")
        else:
            self.app.view("picker").show()

    def invite(self) -> None:
        self.app.view("invite").show()

    def set_chat(self, is_open: bool) -> None:
        holder = self.ids.chat_holder
        if is_open and not holder.children:
            holder.add_widget(self.app.view("chat"))
        elif not is_open and holder.children:
            holder.clear_widgets()
        self.chat_open = is_open
        if self._bridge is not None:
            self._bridge.chat_open = is_open
        if is_open:
            self.app.view("chat").focus_input()

    def leave(self) -> None:
        self.app.spawn(self.app.leave(), what="Leaving")


def create(app: BiscApp) -> CallScreen:
    return CallScreen(app)
