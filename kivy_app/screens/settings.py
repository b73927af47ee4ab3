"""Settings: name, downloads folder, devices with a live mic meter and a test tone, quality, theme.

Every change is checked and saved at once (Settings.save is atomic); a bad value shows its reason
next to the field and saves nothing. The mic meter runs only while this screen is shown."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kivy.clock import Clock
from kivy.factory import Factory
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.modalview import ModalView
from kivy.uix.screenmanager import Screen
from kivy.uix.widget import Widget

from bisc.app.audio_check import (
    DeviceLists,
    LevelMeter,
    TonePlayer,
    describe_level,
    in_audio_thread,
    meter_fraction,
    probe_devices,
)
from bisc.errors import BiscError
from kivy_app.prefs import (
    audio_bitrate_kbps,
    check_display_name,
    check_storage_dir,
    nearest_folder,
    storage_dir,
    subfolders,
    video_max_height,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from kivy_app.app import BiscApp

SYSTEM_DEFAULT = "System default"
NAME_SAVE_DELAY = 0.8  # seconds of no typing before a valid name is saved
METER_FPS = 15
METER_DECAY_DB = 1.5  # per meter tick: the bar falls smoothly instead of flickering
STATUS_SECONDS = 2.5
DEVICE_FIELDS = {"mic": "audio_input_device", "speaker": "audio_output_device", "camera": "camera_device"}


class LevelBar(Widget):  # type: ignore[misc]
    fraction = NumericProperty(0.0)


class SegmentRow(BoxLayout):  # type: ignore[misc]
    """One choice among a few (quality, theme) as a row of buttons; the chosen one is highlighted."""

    choices = ListProperty()  # (value, label) pairs
    value = StringProperty("")
    __events__ = ("on_choose",)

    def __init__(self, **kwargs: Any) -> None:
        self.buttons: dict[str, Any] = {}
        super().__init__(**kwargs)

    def on_choices(self, _row: object, choices: list[tuple[str, str]]) -> None:
        self.clear_widgets()
        self.buttons = {}
        for value, label in choices:
            button = Factory.Segment(text=label)
            button.bind(on_release=lambda _b, v=value: self.dispatch("on_choose", v))
            self.buttons[value] = button
            self.add_widget(button)
        self.on_value(self, self.value)

    def on_value(self, _row: object, value: str) -> None:
        for key, button in self.buttons.items():
            button.selected = key == value

    def on_choose(self, value: str) -> None:
        pass


class FolderRow(ButtonBehavior, BoxLayout):  # type: ignore[misc]
    text = StringProperty("")
    path = StringProperty("")


class FolderPicker(ModalView):  # type: ignore[misc]
    """A touch-sized folder browser: tap a folder to open it, Up to go back, Use to choose."""

    folder = StringProperty("")
    note = StringProperty("")
    at_root = BooleanProperty(False)

    def __init__(self, **kwargs: Any) -> None:
        self._on_pick: Callable[[str], None] | None = None
        super().__init__(**kwargs)

    def choose(self, start: Path, on_pick: Callable[[str], None]) -> None:
        self._on_pick = on_pick
        self.go(nearest_folder(start))
        self.open()

    def go(self, folder: Path) -> None:
        folders, note = subfolders(folder)
        self.note = note or ""
        self.folder = str(folder)
        self.at_root = folder.parent == folder
        box = self.ids.folder_list
        box.clear_widgets()
        for path in folders:
            row = FolderRow(text=path.name, path=str(path))
            row.bind(on_release=lambda r: self.go(Path(r.path)))
            box.add_widget(row)
        if not folders and not self.note:
            self.note = "No folders here. Use this folder, or go up."
        self.ids.folder_scroll.scroll_y = 1

    def up(self) -> None:
        self.go(Path(self.folder).parent)

    def go_home(self) -> None:
        self.go(Path.home())

    def use(self) -> None:
        on_pick, self._on_pick = self._on_pick, None
        self.dismiss()
        if on_pick is not None:
            on_pick(self.folder)


class SettingsScreen(Screen):  # type: ignore[misc]
    status = StringProperty("")  # "Saved" in the top bar, briefly
    problem = StringProperty("")  # the settings file could not be read
    name_error = StringProperty("")
    name_note = StringProperty("")
    storage_error = StringProperty("")
    storage_note = StringProperty("")
    audio_quality = StringProperty("standard")
    video_quality = StringProperty("auto")
    theme_mode = StringProperty("dark")
    mic_values = ListProperty([SYSTEM_DEFAULT])
    speaker_values = ListProperty([SYSTEM_DEFAULT])
    camera_values = ListProperty([SYSTEM_DEFAULT])
    mic_note = StringProperty("")
    speaker_note = StringProperty("")
    camera_note = StringProperty("")
    level = NumericProperty(0.0)  # 0..1 for the bar
    level_dbfs = NumericProperty(None, allownone=True)
    meter_text = StringProperty("")
    tone_status = StringProperty("")
    tone_error = BooleanProperty(False)
    playing = BooleanProperty(False)

    def __init__(self, app: BiscApp, **kwargs: Any) -> None:
        self.app = app
        self.meter = LevelMeter()
        self.tone = TonePlayer()
        self.devices: DeviceLists | None = None
        self._filling = False  # spinners being filled by code, not picked by the user
        self._meter_event: Any = None
        self._shown = False
        self._save_name = Clock.create_trigger(lambda _dt: self.commit_name(), NAME_SAVE_DELAY)
        self._clear_status = Clock.create_trigger(lambda _dt: setattr(self, "status", ""), STATUS_SECONDS)
        super().__init__(name="settings", **kwargs)
        self.picker = FolderPicker()
        app.bind(on_stop=lambda *_a: self.meter.close())

    # -- entering and leaving --------------------------------------------------
    def on_pre_enter(self, *_args: object) -> None:
        s = self.app.settings
        self.problem = self.app.settings_problem()
        self.ids.scroll.scroll_y = 1  # Settings opens at the top
        self.ids.name_input.text = s.display_name
        self.name_error = ""
        later = "The others see a new name from the next channel you create or join."
        self.name_note = later if self.app.node else ""
        self.ids.storage_input.text = str(storage_dir(self.app.paths, s))
        self.storage_error = ""
        override = self.app.options.storage_dir
        session = f"This session saves downloads to {override} (set when bisc started)."
        self.storage_note = session if override else ""
        self.audio_quality, self.video_quality = s.audio_quality, s.video_quality
        self.theme_mode = self.app.theme.mode
        self.tone_status, self.tone_error = "", False
        self._fill_devices()

    def on_enter(self, *_args: object) -> None:
        self._shown = True
        self.meter_text = "Looking for devices..."
        self.app.spawn(self._probe_and_meter(), what="Devices")

    def on_leave(self, *_args: object) -> None:
        self._shown = False
        self._save_name.cancel()
        if not self.name_error:
            self.commit_name()
        if self.picker.get_parent_window() is not None:
            self.picker.dismiss()
        self._stop_meter()

    def back(self) -> None:
        self.app.close_settings()

    # -- saving ------------------------------------------------------------------
    def _save(self, **changes: str) -> str:
        """Save; "" when done, else the reason (nothing saved)."""
        before = self.app.settings
        try:
            self.app.save_settings(**changes)
        except BiscError as exc:
            return str(exc)
        self.problem = self.app.settings_problem()
        if self.app.settings is not before:  # only a real change says "Saved"
            self.status = "Saved"
            self._clear_status()
        return ""

    def name_typed(self, text: str) -> None:
        try:
            check_display_name(text)
        except BiscError as exc:
            self._save_name.cancel()
            self.name_error = str(exc)
            return
        self.name_error = ""
        self._save_name()

    def commit_name(self) -> None:
        try:
            name = check_display_name(self.ids.name_input.text)
        except BiscError as exc:
            self.name_error = str(exc)
            return
        changed = name != self.app.settings.display_name
        self.name_error = self._save(display_name=name)
        if changed and not self.name_error:  # Home's field is what creating a channel uses
            self.app.view("home").ids.name_input.text = name

    def commit_storage(self, text: str) -> None:
        current = str(storage_dir(self.app.paths, self.app.settings))
        if text.strip() == current and not self.app.storage_question_pending():
            self.storage_error = ""
            return
        try:
            folder = check_storage_dir(text)
        except BiscError as exc:
            self.storage_error = str(exc)
            return
        self.storage_error = self._save(storage_dir=str(folder))
        if not self.storage_error:
            self.ids.storage_input.text = str(folder)

    def choose_folder(self) -> None:
        start = Path(self.ids.storage_input.text.strip() or Path.home()).expanduser()
        self.picker.choose(start, self.commit_storage)

    def use_default_folder(self) -> None:
        self.commit_storage(str(self.app.paths.default_storage_dir))

    def set_audio_quality(self, preset: str) -> None:
        if not self._save(audio_quality=preset):
            self.audio_quality = preset

    def set_video_quality(self, preset: str) -> None:
        if not self._save(video_quality=preset):
            self.video_quality = preset

    def set_theme(self, mode: str) -> None:
        error = self._save(theme=mode)
        if error:
            self.app.notify(error)
        else:
            self.theme_mode = mode

    def audio_quality_note(self, preset: str) -> str:
        return f"{audio_bitrate_kbps(preset)} kb/s of upload for each person in the call."

    def video_quality_note(self, preset: str) -> str:
        cap = video_max_height(preset)
        if cap is None:
            return "As sharp as each network allows, up to 1080p."
        return f"At most {cap}p, however good the network."

    # -- devices -----------------------------------------------------------------
    async def _probe_and_meter(self) -> None:
        self.devices = await in_audio_thread(probe_devices)
        self._fill_devices()
        if self._shown:
            await self._start_meter()

    def _fill_devices(self) -> None:
        d, s = self.devices, self.app.settings
        lists = {
            "mic": (d.inputs if d else [], "microphones", d.audio_reason if d else None),
            "speaker": (d.outputs if d else [], "speakers", d.audio_reason if d else None),
            "camera": (d.cameras if d else [], "cameras", d.camera_reason if d else None),
        }
        self._filling = True
        try:
            for kind, (names, plural, reason) in lists.items():
                saved = getattr(s, DEVICE_FIELDS[kind])
                values = [SYSTEM_DEFAULT, *names]
                note = ""
                if saved and saved not in names:
                    values.append(saved)  # shown as chosen; calls fall back to the default
                    note = f"{saved} is not connected now: calls use the system default." if d else ""
                if d is not None and not names:
                    note = f"No {plural} found: {reason}." if reason else f"No {plural} found."
                setattr(self, f"{kind}_values", values)
                setattr(self, f"{kind}_note", note)
                self.ids[f"{kind}_spinner"].text = saved or SYSTEM_DEFAULT
        finally:
            self._filling = False

    def pick_device(self, kind: str, text: str) -> None:
        if self._filling:
            return
        value = "" if text == SYSTEM_DEFAULT else text
        error = self._save(**{DEVICE_FIELDS[kind]: value})
        if error:
            self.app.notify(error)
        elif kind == "mic" and self._shown:
            self.app.spawn(self._start_meter(), what="Microphone")

    async def _start_meter(self) -> None:
        self._stop_meter()  # a new device: the old stream closes first, on the same audio thread
        if self.devices is not None and not self.devices.inputs:
            self.meter_text = "No microphone to measure (see above)."
            return
        self.meter_text = "Opening the microphone..."
        try:
            if not await self.meter.open(self.app.settings.audio_input_device):
                return  # superseded (left Settings, or another device picked) while opening
        except BiscError as exc:
            self.meter_text = str(exc)
            return
        self.level_dbfs = None
        self.meter_text = describe_level(None)
        self._meter_event = Clock.schedule_interval(self._tick_meter, 1 / METER_FPS)

    def _tick_meter(self, _dt: float) -> None:
        peak = self.meter.take()
        if peak is None:
            return
        shown = self.level_dbfs
        self.level_dbfs = peak if shown is None else max(peak, shown - METER_DECAY_DB)
        self.level = meter_fraction(self.level_dbfs)
        self.meter_text = describe_level(self.level_dbfs)

    def _stop_meter(self) -> None:
        if self._meter_event is not None:
            self._meter_event.cancel()
            self._meter_event = None
        self.level = 0.0
        self.meter.close()

    def test_speaker(self) -> None:
        device = self.app.settings.audio_output_device
        self.playing, self.tone_error = True, False
        self.tone_status = f"Playing a tone on {device or 'the system default speaker'}..."

        async def run() -> None:
            try:
                await self.tone.play(device)
                self.tone_status = "Did you hear it? If not, check the volume or choose another speaker."
            finally:
                self.playing = False

        self.app.spawn(run(), on_error=self._tone_failed)

    def _tone_failed(self, text: str) -> None:
        self.tone_status, self.tone_error = text, True


def create(app: BiscApp) -> SettingsScreen:
    return SettingsScreen(app)
