"""The sending half of a voice call: 20 ms PCM frames in, MediaPacket datagrams out.

Each frame is encoded once; the caller fans the same datagram out to every
peer. Runs on whatever thread captures audio (the device callback or a frame
clock); the mute flag and the sender clock are read from other threads, so
both are plain attribute swaps.
"""

from __future__ import annotations

import random
import threading
from collections import deque

from bisc import hotpaths
from bisc.codec import audio_red
from bisc.media.mixer import SpeakingDetector, level_dbfs
from bisc.media.opus import FRAME_SAMPLES, SAMPLE_RATE, OpusEncoder, Pcm
from bisc.proto.media_control import VOICE_STREAM, StreamOffer

# Audio older than this when it reaches the network is not worth sending.
SEND_DEADLINE = 0.1

# Bitrates of the quality presets, b/s. Measured with PESQ on a speech sample (bisc bench --suite
# voice): 32 kb/s leaves Opus (which codes full band, hybrid mode) below 3.8 even without loss, and
# its in-band FEC takes its share too; 64 kb/s reaches about 4.2.
QUALITY_BITRATES = {"low": 24000, "medium": 64000, "high": 96000}

# Copies of earlier frames (audio RED) go in a datagram only while its payload stays under this: well
# inside the smallest QUIC datagram a link takes (about 1150 bytes).
MAX_RED_PAYLOAD = 1000
# Per datagram on the wire besides the Opus payload: packet header, QUIC, UDP and IP (v6) headers.
WIRE_OVERHEAD_BYTES = 80


class VoiceSender:
    def __init__(
        self,
        *,
        bitrate: int = QUALITY_BITRATES["medium"],
        dtx: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        rng = rng or random.Random()
        # DTX: silence goes out as 1-byte packets (still one per frame, so nothing looks lost).
        self.encoder = OpusEncoder(bitrate=bitrate, fec=True, expected_loss_percent=10, dtx=dtx)
        self.stream_id = VOICE_STREAM
        self.muted = False
        self.level_dbfs = -120.0
        self.speaking = False
        self.frames_encoded = 0
        self.bytes_encoded = 0
        self._speaking = SpeakingDetector()
        # Random starts, as in RTP: a restarted sender is a new stream, not a replay.
        self._sequence = rng.getrandbits(32)
        self._timestamp = rng.getrandbits(32)
        # Copies of the frames before each one to add (audio RED, 0..MAX_COPIES), set from the
        # receivers' loss reports; the payloads they copy, nearest first.
        self.redundancy = 0
        self._history: deque[bytes] = deque(maxlen=audio_red.MAX_COPIES)
        # (timestamp, capture time) of the newest frame sent: the sender clock the reports carry.
        self.clock: tuple[int, float] | None = None
        self._lock = threading.Lock()  # one encoder, possibly two capture threads in a hand-over

    @property
    def wire_bps(self) -> int:
        """What this stream takes of the link now, at the nominal rate: every copy sent again, plus
        the headers of 50 datagrams a second (for the video's "audio first" reserve)."""
        frames_per_s = SAMPLE_RATE // FRAME_SAMPLES
        return self.encoder.bitrate * (1 + self.redundancy) + frames_per_s * WIRE_OVERHEAD_BYTES * 8

    def offer(self) -> StreamOffer:
        return StreamOffer(self.stream_id, "audio", audio_red.OPUS_RED, SAMPLE_RATE, 1, 20, True)

    def packetize(self, pcm: Pcm, capture_time: float) -> bytes | None:
        """Encode one captured frame; the datagram to send, or None while muted.

        While muted nothing is encoded and the media clock stands still, so the
        receiver sees a pause, not a jump, when the sender unmutes."""
        self.level_dbfs = level_dbfs(pcm)
        self.speaking = self._speaking.update(pcm) and not self.muted
        if self.muted:
            self._history.clear()  # after the pause, copies of the frames before it are no use
            return None
        with self._lock:
            payload = self.encoder.encode(pcm)
            body = self._with_copies(payload)
            seq, ts = self._sequence, self._timestamp
            self._sequence = (seq + 1) & 0xFFFFFFFF
            self._timestamp = (ts + FRAME_SAMPLES) & 0xFFFFFFFF
            self.clock = (ts, capture_time)
            self.frames_encoded += 1
            self.bytes_encoded += len(payload)
        return bytes(hotpaths.packet.encode_packet(self.stream_id, seq, ts, 0, 1, 0, body))

    def _with_copies(self, payload: bytes) -> bytes:
        copies: list[bytes] = []
        size = 1 + len(payload)
        for copy in list(self._history)[: self.redundancy]:
            size += 2 + len(copy)
            if size > MAX_RED_PAYLOAD:
                break
            copies.append(copy)
        self._history.appendleft(payload)
        return audio_red.pack(payload, copies)
