"""Settings in the real window (tests/gui_support.py), driven by touch: name, downloads folder, devices
with the mic meter and the test tone, quality, theme; and the first-run downloads question.

With BISC_REQUIRE_AUDIO=1 (CI runs a PulseAudio null sink) the meter must show the test tone played
into the null sink, captured back from its monitor; otherwise a "no device" message is accepted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bisc.paths import Paths
from bisc.proto.media_control import CAMERA_STREAM
from bisc.settings import MAX_DISPLAY_NAME, Settings
from kivy_app.prefs import needs_storage_question, voice_quality
from tests.gui_support import frames, go_home, press_key, screenshot, tap, type_into, until

if TYPE_CHECKING:
    from kivy_app.app import BiscApp

pytestmark = pytest.mark.asyncio(loop_scope="session")

NEED_AUDIO = os.environ.get("BISC_REQUIRE_AUDIO", "") not in ("", "0")
OPENING = ("Looking for devices...", "Opening the microphone...")  # the meter's texts before it knows
SETTLE = 1.2  # longer than the name's save delay: nothing may be written after a bad name


def saved(app: BiscApp) -> dict[str, Any]:
    path = app.paths.settings_file
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def file_bytes(app: BiscApp) -> bytes:
    path = app.paths.settings_file
    return path.read_bytes() if path.exists() else b""


async def shown(app: BiscApp, name: str) -> None:
    """`name` is current and its switch is over (the ScreenManager ignores touches until then)."""
    sm = app.sm
    assert sm is not None
    await until(lambda: sm.current == name and not sm.transition.is_active, what=f"the {name} screen")


async def open_settings(app: BiscApp) -> Any:
    await shown(app, "home")
    await tap(app.view("home").ids.settings_button)
    await shown(app, "settings")
    return app.view("settings")


def _inside(inner: Any, outer: Any) -> bool:
    x, y = inner.to_window(inner.x, inner.y)
    ox, oy = outer.to_window(outer.x, outer.y)
    return bool(oy <= y and y + inner.height <= oy + outer.height and ox <= x <= ox + outer.width)


async def drag(scroll: Any, dy: float) -> None:
    """A finger dragged `dy` pixels up (negative: down) across the scroll view, then lifted."""
    from kivy.tests import UnitTestTouch

    x, y = scroll.to_window(*scroll.center)
    touch = UnitTestTouch(x, y - dy / 2)
    touch.touch_down()
    for step in range(1, 7):
        await frames(1)
        touch.touch_move(x, y - dy / 2 + dy * step / 6)
    await frames(4)  # the finger rests before lifting: no fling to wait for
    touch.touch_up()
    await frames(2)


async def into_view(scroll: Any, widget: Any) -> None:
    """Drag the scroll view until `widget` is wholly in view, as a finger would."""
    for _ in range(30):
        if _inside(widget, scroll):
            return
        below = widget.to_window(widget.x, widget.y)[1] < scroll.to_window(scroll.x, scroll.y)[1]
        await drag(scroll, scroll.height * 0.7 if below else -scroll.height * 0.7)
        await until(lambda: abs(scroll.effect_y.velocity) < 1, what="the scrolling to stop")
    raise AssertionError(f"could not scroll {widget} into view")


async def tap_scrolled(scroll: Any, widget: Any) -> None:
    await into_view(scroll, widget)
    await tap(widget)


async def leave_settings(app: BiscApp) -> None:
    await tap(app.view("settings").ids.back_button)
    await shown(app, "home")


async def pick_from_spinner(spinner: Any, text: str) -> None:
    """Open the spinner's list by touch and tap the option `text`."""
    await tap(spinner)
    await until(lambda: spinner.is_open, what="the device list")
    options = [w for w in spinner._dropdown.container.children if w.text == text]
    assert options, f"{text!r} not among {[w.text for w in spinner._dropdown.container.children]}"
    await tap(options[0])
    await until(lambda: spinner.text == text and not spinner.is_open, what=f"{text!r} picked")


@contextlib.contextmanager
def another_app(data_dir: Path) -> Iterator[BiscApp]:
    """A BiscApp on `data_dir` that is constructed (settings loaded) but never run: no second window.
    Kivy's App() makes itself the running app, so the session's app is put back afterwards."""
    from kivy.app import App

    from kivy_app.app import BiscApp, GuiOptions

    running = App.get_running_app()
    try:
        yield BiscApp(GuiOptions(data_dir=str(data_dir)))
    finally:
        App._running_app = running


def pulse_null_sink() -> bool:
    """The null sink as default output and its monitor as default input, when PulseAudio runs."""
    if shutil.which("pactl") is None or subprocess.run(["pactl", "info"], capture_output=True).returncode:
        if NEED_AUDIO:
            pytest.fail("PulseAudio is required (BISC_REQUIRE_AUDIO) but not running")
        return False
    sinks = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True).stdout
    if "bisc_null" not in sinks:
        subprocess.run(["pactl", "load-module", "module-null-sink", "sink_name=bisc_null"], check=True)
    subprocess.run(["pactl", "set-default-sink", "bisc_null"], check=True)
    subprocess.run(["pactl", "set-default-source", "bisc_null.monitor"], check=True)
    return True


async def test_first_run_asks_where_downloads_go_once(gui: BiscApp, kivy_window: Any, tmp_path: Path) -> None:
    # The session's data dir had no settings file at start: Home asks, with the default filled in.
    home = gui.view("home")
    assert gui.storage_question_pending()
    card = home.storage_card
    assert card.parent is not None and card.opacity == 1
    assert home.ids.storage_suggestion_label.text == str(gui.paths.default_storage_dir)
    await screenshot(kivy_window, "home-first-run")
    await tap(home.ids.choose_storage_button)  # the folder picker, then changing one's mind
    picker = gui.view("settings").picker
    await until(lambda: picker.get_parent_window() is not None, what="the folder picker")
    default = gui.paths.default_storage_dir
    assert picker.folder in (str(default), str(default.parent))  # or its parent, while it does not exist
    await tap(picker.ids.cancel_button)
    await until(lambda: picker.get_parent_window() is None, what="the picker to close")
    assert gui.storage_question_pending() and card.parent is not None
    await tap(home.ids.accept_storage_button)  # one tap accepts the default
    await until(lambda: card.parent is None, what="the question to go")
    assert saved(gui)["storage_dir"] == str(gui.paths.default_storage_dir)
    assert gui.paths.default_storage_dir.is_dir()
    assert not gui.storage_question_pending() and not needs_storage_question(gui.paths)
    await open_settings(gui)  # coming back to Home does not ask again
    await leave_settings(gui)
    assert card.parent is None

    # The same rule at start-up, for a fresh data dir: asked until answered, then never again.
    with another_app(tmp_path / "fresh") as fresh:
        assert fresh.storage_question_pending()
        fresh.save_settings(theme="light")  # another change does not answer it
        assert fresh.storage_question_pending()
        fresh.answer_storage_question(str(fresh.paths.default_storage_dir))
        assert not fresh.storage_question_pending()
    with another_app(tmp_path / "fresh") as again:
        assert not again.storage_question_pending()
        assert again.settings.storage_dir == str(again.paths.default_storage_dir)
        assert again.settings.theme == "light"


async def test_broken_settings_file_falls_back_and_is_kept(
    gui: BiscApp, kivy_window: Any, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path)
    paths.settings_file.write_text('theme = "purple"\n', encoding="utf-8")
    with another_app(tmp_path) as app:
        assert app.settings == Settings(display_name=app.settings.display_name)  # the defaults
        assert "theme" in app.settings_problem() and str(paths.settings_file) in app.settings_problem()
        assert not app.storage_question_pending()  # not a first run: the file exists
        app.save_settings(theme="light")
        assert paths.settings_file.with_name("settings.toml.broken").read_text() == 'theme = "purple"\n'
        assert Settings.load(paths.settings_file).theme == "light"
        assert app.settings_problem() == ""

    # The running app's file made unreadable (edited by hand): Settings says so; the next change
    # writes a good file and keeps the bad one.
    target = gui.paths.settings_file
    target.write_text("display_name = 3\n", encoding="utf-8")
    screen = await open_settings(gui)
    assert "could not be read" in screen.ids.problem_label.text and "display_name" in screen.problem
    assert screen.ids.problem_label.opacity == 1
    await type_into(screen.ids.name_input, "Ada King")
    await press_key(kivy_window, "enter")
    await until(lambda: not screen.problem, what="the banner to go")
    assert target.with_name("settings.toml.broken").read_text() == "display_name = 3\n"
    assert Settings.load(target).display_name == "Ada King" and screen.ids.problem_label.opacity == 0


async def test_name_is_validated_and_saved(gui: BiscApp, kivy_window: Any) -> None:
    screen = await open_settings(gui)
    field = screen.ids.name_input
    await into_view(screen.ids.scroll, field)
    await until(lambda: screen.meter_text not in OPENING, timeout=15, what="the meter to open or explain")
    await screenshot(kivy_window, "settings")
    await type_into(field, "Grace Hopper")
    await until(lambda: saved(gui).get("display_name") == "Grace Hopper", what="the new name saved")
    assert gui.view("home").ids.name_input.text == "Grace Hopper"
    assert screen.ids.status_label.text == "Saved"

    before = file_bytes(gui)
    bad = {
        "": "Type a name",
        "   ": "Type a name",
        "x" * (MAX_DISPLAY_NAME + 1): f"At most {MAX_DISPLAY_NAME} characters",
        "Ada\tLovelace": "control characters",
        "Ada\x07": "control characters",
    }
    for text, reason in bad.items():
        await type_into(field, text)
        await until(lambda: screen.name_error, what=f"an error for {text!r}")
        assert reason in screen.name_error, screen.name_error
        assert screen.ids.name_error_label.opacity == 1 and "display_name" not in screen.name_error
    await asyncio.sleep(SETTLE)
    await tap(screen.ids.name_error_label)  # the field loses the focus: still nothing saved
    await until(lambda: not field.focus, what="the name field to lose the focus")
    await asyncio.sleep(0.3)
    assert file_bytes(gui) == before
    assert gui.settings.display_name == "Grace Hopper"

    await type_into(field, "  Ada Lovelace  ")
    await press_key(kivy_window, "enter")
    await until(lambda: saved(gui).get("display_name") == "Ada Lovelace", what="the trimmed name saved")
    assert not screen.name_error and screen.ids.name_error_label.opacity == 0


async def test_theme_switches_live_and_is_saved(gui: BiscApp, kivy_window: Any) -> None:
    screen = await open_settings(gui)
    await tap_scrolled(screen.ids.scroll, screen.ids.theme_row.buttons["light"])
    await until(lambda: gui.theme.mode == "light", what="the light theme")
    assert saved(gui)["theme"] == "light" and screen.ids.theme_row.buttons["light"].selected
    assert tuple(kivy_window.clearcolor) == tuple(gui.theme.bg)
    await screenshot(kivy_window, "settings-light")
    await tap_scrolled(screen.ids.scroll, screen.ids.theme_row.buttons["dark"])
    await until(lambda: gui.theme.mode == "dark", what="the dark theme")
    assert saved(gui)["theme"] == "dark"


async def test_quality_presets_are_saved_and_mapped_for_the_call(gui: BiscApp) -> None:
    screen = await open_settings(gui)
    for key, row, value in (
        ("audio_quality", "audio_row", "high"),
        ("audio_quality", "audio_row", "standard"),
        ("video_quality", "video_row", "low"),
        ("video_quality", "video_row", "auto"),
    ):
        buttons = screen.ids[row].buttons
        await tap_scrolled(screen.ids.scroll, buttons[value])
        await until(lambda: saved(gui).get(key) == value, what=f"{key} = {value}")  # noqa: B023
        assert [v for v, b in buttons.items() if b.selected] == [value]
    assert "64 kb/s" in screen.audio_quality_note("standard")
    assert [voice_quality(p) for p in ("low", "standard", "high")] == ["low", "medium", "high"]

    # The mic button's call: the preset's quality; devices only for the real mic and speaker.
    options = await gui.voice_options()
    assert options == {"quality": "medium"}  # the session's app uses audio_in=audio_out="none"
    assert gui.camera_source() == gui.options.video_source  # a test pattern wins over the camera

    # The video preset caps what the camera button sends (tests/test_video_ladder.py: the cap at work).
    assert "360p" in screen.video_quality_note("low") and "1080p" in screen.video_quality_note("auto")
    for value, cap in (("low", 360), ("auto", None)):
        await tap_scrolled(screen.ids.scroll, screen.ids.video_row.buttons[value])
        await until(lambda: saved(gui).get("video_quality") == value, what=f"video {value}")  # noqa: B023
        await gui.create_channel("Ada")
        await gui.toggle_camera()
        assert gui.channel is not None and gui.channel.video is not None
        sender = gui.channel.video.sender(CAMERA_STREAM)
        assert sender is not None and sender.ladder.max_height == cap
        await shown(gui, "call")
        await go_home(gui)
        screen = await open_settings(gui)


async def test_storage_folder_checked_typed_and_picked(
    gui: BiscApp, kivy_window: Any, tmp_path: Path
) -> None:
    screen = await open_settings(gui)
    field = screen.ids.storage_input
    await into_view(screen.ids.scroll, field)
    before = file_bytes(gui)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    bad = {
        str(tmp_path / "missing" / "deeper"): "does not exist",
        str(a_file): "is a file",
        "relative/folder": "full path",
    }
    for text, reason in bad.items():
        await type_into(field, text)
        await press_key(kivy_window, "enter")
        await until(lambda: screen.storage_error, what=f"an error for {text!r}")
        assert reason in screen.storage_error, screen.storage_error
        assert screen.ids.storage_error_label.opacity == 1
    assert file_bytes(gui) == before

    downloads = tmp_path / "dl"
    await type_into(field, str(downloads))  # missing, but its parent exists: created
    await press_key(kivy_window, "enter")
    await until(lambda: saved(gui).get("storage_dir") == str(downloads), what="the typed folder saved")
    assert downloads.is_dir() and not screen.storage_error

    # The folder picker, by touch: open a subfolder, use it.
    (downloads / "Films").mkdir()
    (downloads / ".hidden").mkdir()
    await tap_scrolled(screen.ids.scroll, screen.ids.choose_folder_button)
    picker = screen.picker
    await until(lambda: picker.get_parent_window() is not None, what="the folder picker")
    await until(lambda: picker.folder == str(downloads), what="the picker at the current folder")
    rows = {row.text: row for row in picker.ids.folder_list.children}
    assert set(rows) == {"Films"}, rows
    await screenshot(kivy_window, "settings-folder-picker")
    await tap(rows["Films"])
    await until(lambda: picker.folder == str(downloads / "Films"), what="Films opened")
    assert not picker.ids.folder_list.children and picker.note  # empty: says so
    await tap(picker.ids.use_button)
    await until(lambda: picker.get_parent_window() is None, what="the picker to close")
    assert saved(gui)["storage_dir"] == str(downloads / "Films")
    assert field.text == str(downloads / "Films")

    await tap_scrolled(screen.ids.scroll, screen.ids.default_folder_button)
    await until(lambda: saved(gui)["storage_dir"] == str(gui.paths.default_storage_dir), what="the default")


async def test_devices_meter_and_test_tone(gui: BiscApp, kivy_window: Any) -> None:
    from kivy_app.screens.settings import SYSTEM_DEFAULT

    pulse = pulse_null_sink()
    screen = await open_settings(gui)
    await until(lambda: screen.devices is not None, timeout=15, what="the device lists")
    devices = screen.devices
    for kind in ("mic", "speaker", "camera"):
        assert getattr(screen, f"{kind}_values")[0] == SYSTEM_DEFAULT
    if not devices.cameras:
        assert screen.camera_note.startswith("No cameras found"), screen.camera_note
    await until(lambda: screen.meter_text not in OPENING, timeout=15, what="the meter to open or explain")
    if not devices.inputs:
        assert not NEED_AUDIO, f"no microphone although PulseAudio is required: {devices.audio_reason}"
        assert screen.mic_note.startswith("No microphones found") and "No microphone" in screen.meter_text
        return
    if not pulse:  # devices without the null sink: a level or a readable failure, never a crash
        assert screen.meter.is_open or screen.meter_text.endswith("."), screen.meter_text
        return

    # The null sink's monitor is the default input: the test tone comes back as a real level.
    assert "pulse" in devices.inputs and "pulse" in devices.outputs, devices
    await into_view(screen.ids.scroll, screen.ids.mic_spinner)
    await pick_from_spinner(screen.ids.mic_spinner, "pulse")
    assert saved(gui)["audio_input_device"] == "pulse"
    await until(lambda: screen.meter.is_open, timeout=15, what="the meter on 'pulse'")
    await into_view(screen.ids.scroll, screen.ids.speaker_spinner)
    await pick_from_spinner(screen.ids.speaker_spinner, "pulse")
    assert saved(gui)["audio_output_device"] == "pulse"
    await tap_scrolled(screen.ids.scroll, screen.ids.test_speaker_button)
    await until(lambda: screen.playing, what="the tone to start")
    assert "Playing" in screen.ids.test_speaker_button.text and screen.ids.test_speaker_button.disabled
    await until(lambda: (screen.level_dbfs or -999) > -30, timeout=15, what="the tone on the meter")
    assert "dBFS" in screen.meter_text and screen.level > 0.4
    await until(lambda: not screen.playing, timeout=15, what="the tone to end")
    assert "Did you hear it?" in screen.tone_status and not screen.tone_error

    gui.options.audio_in, gui.options.audio_out = "mic", "speaker"  # what a user's mic button starts
    try:
        chosen = await gui.voice_options()
    finally:
        gui.options.audio_in, gui.options.audio_out = "none", "none"
    assert isinstance(chosen["input_device"], int) and isinstance(chosen["output_device"], int)
    assert chosen["quality"] == "medium"

    await leave_settings(gui)  # leaving Settings closes the microphone
    await until(lambda: not screen.meter.is_open, what="the meter to close")


async def test_missing_devices_are_explained(gui: BiscApp, kivy_window: Any, monkeypatch: Any) -> None:
    import bisc.app.audio_check as audio_check

    screen = await open_settings(gui)  # a saved microphone that is unplugged now
    await until(lambda: screen.devices is not None, timeout=15, what="the device lists")
    await leave_settings(gui)
    gui.save_settings(audio_input_device="USB Headset (unplugged)")
    screen = await open_settings(gui)
    await until(lambda: screen.meter_text not in OPENING, timeout=15, what="the meter to open or explain")
    if screen.devices.inputs:
        assert "USB Headset (unplugged) is not connected" in screen.mic_note, screen.mic_note
        assert "USB Headset (unplugged)" in screen.meter_text and not screen.meter.is_open
    await leave_settings(gui)
    gui.save_settings(audio_input_device="", audio_output_device="")

    # No PortAudio device at all: every list says why, the meter too, and the tone fails politely.
    monkeypatch.setattr(audio_check, "list_audio_devices", lambda: ([], "PortAudio found no audio devices"))
    screen = await open_settings(gui)
    await until(lambda: screen.devices is not None and not screen.devices.inputs, timeout=15)
    await until(lambda: screen.meter_text.startswith("No microphone to measure"), what="the meter's reason")
    assert screen.mic_note == "No microphones found: PortAudio found no audio devices."
    assert screen.speaker_note == "No speakers found: PortAudio found no audio devices."
    with pytest.raises(audio_check.AudioCheckError, match=r"no such microphone|PyAudio|PortAudio"):
        await audio_check.LevelMeter().open("no such microphone")
    await leave_settings(gui)


async def test_settings_from_a_call_returns_to_it(gui: BiscApp) -> None:
    await tap(gui.view("home").ids.create_button)
    await until(lambda: gui.in_call, timeout=20, what="a new channel")
    await shown(gui, "call")
    await tap(gui.view("call").ids.settings_button)
    await shown(gui, "settings")
    screen = gui.view("settings")
    assert "next channel" in screen.name_note  # the running node announced the old name already
    await tap(screen.ids.back_button)
    await shown(gui, "call")
    assert gui.in_call and not screen.meter.is_open


async def test_mic_button_with_the_saved_microphone_gone(gui: BiscApp) -> None:
    """The microphone saved in Settings is unplugged: the mic button says so in a sentence and the
    call goes on with the system default (the null sink's monitor here); no traceback, no freeze."""
    if not pulse_null_sink():
        pytest.skip("needs PulseAudio's null sink for a default microphone")
    gui.save_settings(audio_input_device="USB Headset (unplugged)")
    gui.options.audio_in = "mic"
    try:
        await tap(gui.view("home").ids.create_button)
        await until(lambda: gui.in_call, timeout=20, what="a new channel")
        await shown(gui, "call")
        await tap(gui.view("call").ids.mic_button)
        await until(lambda: gui.voice_on, timeout=15, what="the mic on the default device")
        assert "USB Headset (unplugged)" in gui.message and "not connected" in gui.message, gui.message
        assert "Traceback" not in gui.message
        assert gui.channel is not None and gui.channel.voice is not None and not gui.channel.voice.muted
        await tap(gui.view("call").ids.leave_button)
        await until(lambda: not gui.in_call, what="leaving")
    finally:
        gui.options.audio_in = "none"
        gui.save_settings(audio_input_device="")
