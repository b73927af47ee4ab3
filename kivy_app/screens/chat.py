"""The chat panel: messages with names and times, and an input box."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kivy.clock import Clock
from kivy.properties import BooleanProperty, ListProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from bisc.proto.messages import MAX_CHAT

if TYPE_CHECKING:
    from kivy_app.app import BiscApp


class ChatMessage(BoxLayout):  # type: ignore[misc]
    name = StringProperty("")
    time = StringProperty("")
    text = StringProperty("")
    mine = BooleanProperty(False)


class ChatPanel(BoxLayout):  # type: ignore[misc]
    messages = ListProperty()

    def __init__(self, app: BiscApp, **kwargs: Any) -> None:
        self.app = app
        self._bridge: Any = None
        self._shown = 0  # the seq of the newest message on screen
        super().__init__(**kwargs)
        app.bind(bridge=self._on_bridge)
        self._on_bridge(app, app.bridge)

    def _on_bridge(self, _app: object, bridge: Any) -> None:
        if self._bridge is not None:
            self._bridge.unbind(messages=self._on_messages)
        self._bridge = bridge
        self.messages = []
        if bridge is not None:
            bridge.bind(messages=self._on_messages)
            self.messages = list(bridge.messages)

    def _on_messages(self, _bridge: object, messages: list[dict[str, Any]]) -> None:
        self.messages = list(messages)

    def on_messages(self, _instance: object, messages: list[dict[str, Any]]) -> None:
        box = self.ids.list
        if not messages or messages[-1]["seq"] < self._shown:  # a new channel: start over
            box.clear_widgets()
            self._shown = 0
        for m in messages:
            if m["seq"] > self._shown:
                box.add_widget(ChatMessage(name=m["name"], time=m["time"], text=m["text"], mine=m["mine"]))
                self._shown = m["seq"]
        # The bridge keeps the newest messages only: so does the panel (children are newest first).
        for old in box.children[len(messages) :]:
            box.remove_widget(old)
        Clock.schedule_once(lambda _dt: setattr(self.ids.scroll, "scroll_y", 0), 0)

    def focus_input(self) -> None:
        Clock.schedule_once(lambda _dt: setattr(self.ids.input, "focus", True), 0)

    def send(self) -> None:
        text = self.ids.input.text.strip()
        if not text:
            return
        if len(text) > MAX_CHAT:
            self.app.notify(f"A message can have at most {MAX_CHAT} characters")
            return
        self.ids.input.text = ""
        self.app.spawn(self.app.send_chat(text), what="Message not sent")
        self.focus_input()


def create(app: BiscApp) -> ChatPanel:
    return ChatPanel(app)
