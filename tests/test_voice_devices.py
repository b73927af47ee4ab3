"""A voice call through real audio devices: PyAudio on a PulseAudio null sink
and its monitor (the CI machine has no sound card)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bisc.app import Node
from tests.test_audio_devices import pulse_null_sink
from tests.test_channels import full_mesh, wait_until
from tests.voice_helpers import RATE, TONE_RMS, band_rms, peak_hz, read_wav

pytestmark = pytest.mark.timeout(90)
__all__ = ["pulse_null_sink"]


async def test_call_through_speaker_and_microphone(pulse_null_sink: str, tmp_path: Path) -> None:
    """A sends a tone; B plays it on the (null) speaker and captures the speaker's monitor as its
    microphone, so B sends A's tone back: A's recording proves both device directions end to end."""
    a_node = await Node(data_dir=tmp_path / "a", display_name="a", bind="127.0.0.1:0").start()
    b_node = await Node(data_dir=tmp_path / "b", display_name="b", bind="127.0.0.1:0").start()
    try:
        a = await a_node.create_channel()
        b = await b_node.join(a.ticket())
        await wait_until(lambda: full_mesh([a, b]), 10.0, "mesh", [a, b])
        va = await a.start_voice("tone:660", str(tmp_path / "a.wav"))
        vb = await b.start_voice("mic", "speaker", device="pulse")
        assert "microphone" in vb.input_description and "speaker" in vb.output_description
        # PulseAudio's monitor source starts delivering a second or two after the streams open.
        await wait_until(lambda: len(va.stats()) == 1 and len(vb.stats()) == 1, 10.0, "audio both ways")
        await wait_until(lambda: va.stats()[b.me].packets > 150, 10.0, "three seconds of B's microphone")
        at_a = va.stats()[b.me]
        await b.stop_voice()
        await a.stop_voice()
    finally:
        await a_node.close()
        await b_node.close()
    pcm = read_wav(tmp_path / "a.wav")[-2 * RATE :]
    # B's playout sheds the backlog PulseAudio's late start leaves (up to ~25 dropped frames in 3 s);
    # each 20 ms dropped from a tone advances its phase by 0.2 cycle, so the peak may read a few Hz high.
    assert abs(peak_hz(pcm) - 660.0) < 6
    # Two Opus passes and a trip through PulseAudio at unity volume: the level survives within a few dB.
    assert band_rms(pcm, 660.0) > TONE_RMS * 0.5
    assert at_a.packets > 150 and at_a.decode_errors == 0
