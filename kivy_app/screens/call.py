"""The call: a responsive grid of tiles (video, or initials), speaking and mute marks, the controls bar.

Video: every frame tick the screen reads `bridge.frames()` (the newest picture per peer) and a tile
uploads a texture only when that picture's version changed; the decoder's older pictures are
never queued (newest wins)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from kivy.clock import Clock
from kivy.graphics.texture import Texture
from kivy.properties import BooleanProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.screenmanager import Screen

from bisc.media.video_types import DecodedFrame

if TYPE_CHECKING:
    from kivy_app.app import BiscApp

VIDEO_FPS = 30
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


class PeerTile(FloatLayout):  # type: ignore[misc]
    key = StringProperty("")
    name = StringProperty("")
    initials = StringProperty("")
    me = BooleanProperty(False)
    muted = BooleanProperty(False)
    speaking = BooleanProperty(False)
    video = BooleanProperty(False)  # the peer says its camera is on
    texture = ObjectProperty(None, allownone=True)
    version: Any = None

    def update(self, info: dict[str, Any]) -> None:
        self.key = info["key"]
        self.name = info["name"]
        self.initials = info["initials"]
        self.me = info["me"]
        self.muted = info["muted"]
        self.speaking = info["speaking"]
        self.video = info["video"] or info["screen"]

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
        texture.blit_buffer(data.tobytes(), colorfmt="rgb", bufferfmt="ubyte")
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

    def __init__(self, app: BiscApp, **kwargs: Any) -> None:
        self.app = app
        self.tiles: dict[str, PeerTile] = {}
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
            self.ids.grid.remove_widget(tile)
        self.tiles.clear()
        if bridge is not None:
            bridge.bind(members=self._on_members, unread=self._on_unread)
            self._on_members(bridge, bridge.members)

    def _on_unread(self, _bridge: object, count: int) -> None:
        self.unread = count

    def _on_members(self, _bridge: object, members: list[dict[str, Any]]) -> None:
        grid = self.ids.grid
        wanted = {m["key"] for m in members}
        for key in [k for k in self.tiles if k not in wanted]:
            grid.remove_widget(self.tiles.pop(key))
        for info in members:
            tile = self.tiles.get(info["key"])
            if tile is None:
                tile = PeerTile()
                self.tiles[info["key"]] = tile
                grid.add_widget(tile)
            tile.update(info)
        self.member_count = len(members)
        grid.relayout()

    # -- video ---------------------------------------------------------------
    def on_enter(self, *_args: object) -> None:
        if self._video_event is None:
            self._video_event = Clock.schedule_interval(self._poll_video, 1 / VIDEO_FPS)

    def on_leave(self, *_args: object) -> None:
        if self._video_event is not None:
            self._video_event.cancel()
            self._video_event = None

    def _poll_video(self, _dt: float) -> None:
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
