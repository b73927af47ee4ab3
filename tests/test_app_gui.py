"""The Kivy app in a real window (a private Xvfb), driven by touch events like a user.

The app is the session's (tests/gui_support.py); the other peer is a headless Node on the same loop
with its own data dir. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from bisc.app import Node
from tests.gui_support import go_home, screenshot, tap, type_into, until

if TYPE_CHECKING:
    from kivy_app.app import BiscApp

pytestmark = pytest.mark.asyncio(loop_scope="session")


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

    # Tap it: nobody else is in it, so the same channel opens again with just us, and says so.
    await tap(home.ids.recent_list.children[-1])  # rows are added newest first
    await until(lambda: gui.in_call and gui.channel is not None, what="the recent channel reopened")
    assert gui.channel is not None and gui.channel.topic_id == ticket.topic_id
    assert "Nobody else is here yet" in gui.message, gui.message
    await go_home(gui)


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
        # What the tile shows is Bob's pattern: its stamp reads back from the texture's own pixels.
        from bisc.media.video_pattern import read_pattern_stamp

        def stamp_on_tile() -> tuple[int, int] | None:
            texture = call.tiles[bob_key].texture
            rgba = np.frombuffer(texture.pixels, dtype=np.uint8).reshape(180, 320, 4)
            return read_pattern_stamp(np.ascontiguousarray(rgba[:, :, :3]), "rgb24")  # rows as uploaded

        first = stamp_on_tile()
        assert first is not None, "the tile does not show a readable pattern"
        await until(lambda: (stamp_on_tile() or (0, 0))[0] > first[0], what="the pattern's counter moving")

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
        assert all(len(w.time) == 5 and w.time[2] == ":" for w in panel.ids.list.children)  # HH:MM
        assert call.unread == 0
        await screenshot(kivy_window, "call-chat")

        # Past the bridge's history limit the panel keeps showing new messages (the oldest go).
        from kivy_app.bridge import MAX_MESSAGES

        for i in range(MAX_MESSAGES + 10):
            await channel.send_chat(f"flood {i}")
        last = f"flood {MAX_MESSAGES + 9}"
        await until(lambda: panel.ids.list.children[0].text == last, timeout=20, what="the newest message")
        assert len(panel.ids.list.children) == MAX_MESSAGES
        assert panel.ids.list.children[-1].text == "flood 10"  # 2 + 510 sent, the newest 500 kept
        await tap(panel.ids.close_button)
        await until(lambda: not call.chat_open, what="the chat panel to close")

        assert not gui.message, gui.message
        await screenshot(kivy_window, "call-video")
        await channel.leave()
        reader.cancel()
        await until(lambda: len(call.tiles) == 1, timeout=10, what="Bob's tile to go")
    await go_home(gui)


async def test_tiles_badges_focus_and_shortcuts(gui: BiscApp, kivy_window: Any, tmp_path: Path) -> None:
    """Self-view, a peer's badges (muted, video, sharing), its screen share coming up large, tap to
    focus, and the desktop shortcuts M, V and Esc."""
    from bisc.media.video_endpoints import open_camera_source
    from bisc.proto.media_control import SCREEN_STREAM
    from tests.gui_support import press_key

    await tap(gui.view("home").ids.create_button)
    await until(lambda: gui.channel is not None and gui.in_call, what="a new channel")
    assert gui.channel is not None
    call = gui.view("call")
    me = str(gui.channel.me)

    # V: the camera (the test pattern) starts, and my own tile shows it (self-view).
    await press_key(kivy_window, "v")
    await until(lambda: gui.camera_on, timeout=15, what="the camera from the V key")
    await until(lambda: call.tiles[me].texture is not None, timeout=15, what="the self-view")
    assert call.tiles[me].ids.camera_badge.opacity == 1

    async with Node(data_dir=tmp_path / "bob", display_name="Bob Builder", bind="127.0.0.1:0") as bob:
        channel = await bob.join(gui.channel.ticket())
        bob_key = str(bob.identity.endpoint_id)
        await until(lambda: bob_key in call.tiles, timeout=15, what="Bob's tile")
        bob_video = await channel.start_video()
        tile = call.tiles[bob_key]
        # Bob mutes: the badge shows on his tile here.
        voice = await channel.start_voice("none", "none")
        voice.mute()
        await until(lambda: tile.ids.mute_badge.opacity == 1, timeout=20, what="Bob's mute badge")
        voice.mute(False)
        await until(lambda: tile.ids.mute_badge.opacity == 0, timeout=20, what="Bob's mute badge to go")

        # Bob shares a "screen" (the pattern as stream 2): its own tile, large, his tile badged.
        source, size = await asyncio.to_thread(open_camera_source, "pattern:480x270")
        await channel.start_screen(source, size=size)
        share = f"{bob_key}:screen"
        await until(
            lambda: share in call.tiles and call.focused == share, timeout=15, what="Bob's share, large"
        )
        await until(lambda: call.tiles[share].texture is not None, timeout=30, what="Bob's screen pixels")
        assert tile.ids.screen_badge.opacity == 1
        assert call.tiles[share].parent is call.ids.stage.__self__
        big, small = call.tiles[share], tile
        assert big.width * big.height > 3 * small.width * small.height, (big.size, small.size)
        await screenshot(kivy_window, "call-screen-share")
        # Tap the share: back to the grid; tap Bob's camera tile: it is focused instead.
        await tap(call.tiles[share])
        await until(lambda: call.focused == "", what="the share back in the grid")
        assert call.tiles[share].parent is call.ids.grid.__self__
        await tap(tile)
        await until(lambda: call.focused == bob_key, what="Bob's tile focused")
        await tap(tile)
        await until(lambda: call.focused == "", what="Bob's tile back in the grid")

        # The app shares its own screen through the picker; Bob receives stream 2 from us.
        await tap(call.ids.screen_button)
        picker = gui.view("picker")
        await until(lambda: picker.rows and not picker.loading, timeout=20, what="the share choices")
        assert picker.ids.app_audio_button.disabled and "not available" in picker.app_audio_note
        assert any(r.choice.kind == "display" and r.thumbnail is not None for r in picker.rows)
        await screenshot(kivy_window, "share-picker")
        display = next(r for r in picker.rows if r.choice.kind == "display")
        await tap(display)
        await until(lambda: gui.screen_on, timeout=15, what="our screen share")
        ada = gui.channel.me
        me_key = str(ada)
        await until(
            lambda: any(p == ada and s == SCREEN_STREAM and f is not None
                        for (p, s), (_v, f) in bob_video.frames().items()),
            timeout=40,
            what="our screen at Bob",
        )  # fmt: skip
        assert f"{me_key}:screen" in call.tiles
        await tap(call.ids.screen_button)  # "Stop share"
        await until(
            lambda: not gui.screen_on and f"{me_key}:screen" not in call.tiles, what="the share to stop"
        )

        # M starts the mic (muted=False), M again mutes; typing an M in the chat is just a letter.
        await press_key(kivy_window, "m")
        await until(lambda: gui.voice_on, timeout=10, what="the mic from the M key")
        # Bob talks (a tone): his tile rings while he does, and carries a link-quality badge.
        await voice.set_input("tone:440")
        await until(lambda: tile.speaking, timeout=15, what="Bob speaking")
        await until(lambda: tile.quality in ("good", "fair", "poor"), timeout=15, what="a link quality")
        assert tile.ids.quality_badge.opacity == 1 and tile.ids.quality_badge.text.endswith("link")
        await screenshot(kivy_window, "call-speaking")
        await voice.set_input("none")
        await until(lambda: not tile.speaking, timeout=15, what="Bob quiet again")
        await press_key(kivy_window, "m")
        await until(lambda: gui.muted, what="muted by the M key")
        await until(lambda: call.tiles[me].ids.mute_badge.opacity == 1, what="my mute badge")
        await tap(call.ids.chat_button)
        panel = gui.view("chat")
        await type_into(panel.ids.input, "")
        await press_key(kivy_window, "m")
        assert gui.muted, "M in a text field must not unmute"
        await press_key(kivy_window, "escape")  # Esc closes the chat panel first...
        await until(lambda: not call.chat_open, what="Esc to close the chat")
        await channel.leave()
    await press_key(kivy_window, "escape")  # ...then leaves the call, and never closes the app
    await until(
        lambda: gui.sm is not None and gui.sm.current == "home" and not gui.in_call, what="Esc to leave"
    )
    await press_key(kivy_window, "escape")
    await asyncio.sleep(0.2)
    assert gui.sm is not None and gui.sm.current == "home"


def _qr_video(path: Path, text: str, frames: int = 20) -> Path:
    """A short video whose every frame shows `text` as a QR code (what a camera pointed at it sees)."""
    import av
    import numpy as np

    from kivy_app.qr import qr_matrix

    modules = qr_matrix(text)
    code = np.where(modules, 0, 255).astype(np.uint8).repeat(5, 0).repeat(5, 1)
    picture = np.full((480, 640), 200, dtype=np.uint8)
    y, x = (480 - code.shape[0]) // 2, (640 - code.shape[1]) // 2
    picture[y : y + code.shape[0], x : x + code.shape[1]] = code
    rgb = np.ascontiguousarray(np.repeat(picture[:, :, None], 3, axis=2))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=15)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        stream.bit_rate = 2_000_000
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


async def test_scan_a_ticket_qr_code_to_join(gui: BiscApp, kivy_window: Any, tmp_path: Path) -> None:
    home = gui.view("home")
    # A QR code that is not a ticket: the scanner says so and keeps looking.
    gui.options.scan_source = str(_qr_video(tmp_path / "other.mkv", "https://example.org/not-a-ticket"))
    await tap(home.ids.scan_button)
    sheet = gui.view("scan")
    await until(lambda: "not a bisc ticket" in sheet.status, timeout=20, what="the not-a-ticket notice")
    assert sheet.preview is not None
    await screenshot(kivy_window, "scan")
    await tap(sheet.ids.cancel_button)
    await until(
        lambda: sheet.get_parent_window() is None and sheet.scanner is None, what="the scanner to stop"
    )

    async with Node(data_dir=tmp_path / "bob", display_name="Bob Builder", bind="127.0.0.1:0") as bob:
        channel = await bob.create_channel()
        gui.options.scan_source = str(_qr_video(tmp_path / "ticket.mkv", channel.ticket().to_text()))
        await tap(home.ids.scan_button)
        await until(
            lambda: gui.channel is not None and gui.in_call, timeout=30, what="joining from the QR code"
        )
        assert gui.channel is not None and gui.channel.topic_id == channel.topic_id
        ada = gui.node.identity.endpoint_id if gui.node is not None else None
        await until(lambda: ada in channel.members, timeout=15, what="Ada among Bob's members")
        await go_home(gui)
    gui.options.scan_source = None
    # No camera to scan with: a readable error in the sheet, no crash.
    gui.options.scan_source = "camera:/dev/no-such-camera"
    await tap(home.ids.scan_button)
    await until(lambda: "Cannot scan" in sheet.status, timeout=20, what="the no-camera message")
    assert "Traceback" not in sheet.status
    await tap(sheet.ids.cancel_button)
    gui.options.scan_source = None


async def test_bad_input_in_every_home_and_chat_field(gui: BiscApp, kivy_window: Any) -> None:
    """Garbage in the name, ticket and chat fields: a readable message each time, never a crash."""
    from bisc.proto.messages import MAX_CHAT

    home = gui.view("home")
    good_name = home.ids.name_input.text
    bad_tickets = [
        "   ",
        "bisc1" + "a" * 20_000,
        "\x00\x01\x02",
        "bisc1" + "é" * 50,
        "BISC1AAAA",
        "hello world",
    ]
    for text in bad_tickets:
        await type_into(home.ids.ticket_input, text)
        await tap(home.ids.join_button)
        await until(lambda: home.error, timeout=10, what=f"an error for ticket {text[:20]!r}")
        assert home.error.startswith("Could not join: ") and "Traceback" not in home.error, home.error
        assert len(home.error) < 400, home.error
        assert not gui.in_call
    await type_into(home.ids.ticket_input, "")
    await type_into(home.ids.name_input, "x" * 500)  # the field stops at the longest name
    assert home.ids.name_input.text == "x" * 64
    for name in ["", "   ", "bad\x00name\x07"]:
        await type_into(home.ids.name_input, name)
        await tap(home.ids.create_button)
        await until(lambda: home.error, timeout=10, what=f"an error for the name {name!r}")
        assert home.error.startswith("Could not create a channel: "), home.error
        assert not gui.in_call
    await type_into(home.ids.name_input, good_name)
    await tap(home.ids.create_button)
    await until(lambda: gui.in_call and gui.bridge is not None, what="a channel")
    assert gui.bridge is not None
    call = gui.view("call")
    await tap(call.ids.chat_button)
    panel = gui.view("chat")
    await type_into(panel.ids.input, "   ")  # blank: nothing is sent
    await tap(panel.ids.send_button)
    await type_into(panel.ids.input, "y" * (MAX_CHAT + 1))
    await tap(panel.ids.send_button)
    await until(lambda: "at most" in gui.message, what="the too-long notice")
    assert gui.bridge.messages == []
    await type_into(panel.ids.input, "emoji 🎉 and \u202e bidi")
    await tap(panel.ids.send_button)
    await until(lambda: len(gui.bridge.messages) == 1, what="the odd but valid message")
    await go_home(gui)


async def test_unreachable_peers_are_a_readable_error(gui: BiscApp, tmp_path: Path) -> None:
    async with Node(data_dir=tmp_path / "gone", display_name="Gone", bind="127.0.0.1:0") as gone:
        ticket = (await gone.create_channel()).ticket().to_text()
    home = gui.view("home")  # the ticket is good, but nobody answers at its addresses any more
    await type_into(home.ids.ticket_input, ticket)
    await tap(home.ids.join_button)
    await until(lambda: home.error, timeout=40, what="the join to give up")
    assert home.error.startswith("Could not join: ") and "Traceback" not in home.error, home.error
    assert "no answer" in home.error and home.error.count("ould not join") == 1, home.error
    assert not gui.in_call and gui.sm is not None and gui.sm.current == "home"
    assert not home.ids.join_button.disabled  # ready for another try
    await type_into(home.ids.ticket_input, "")
