"""The aiortc side of the voice-quality comparison: two RTCPeerConnections, one process each.

The parent process (`run_aiortc_once`) does the signalling over each peer's
stdin/stdout (one JSON object per line) and runs the impairment relays, so a
peer's CPU time (time.process_time over the media phase) is its own: Opus
encode or decode, SRTP, ICE and the asyncio loop, nothing else.

Routing: both peers gather loopback host candidates only (no STUN). The parent
rewrites the sender's candidate in the offer to a relay in front of the
sender, and the receiver's candidate in the answer to a relay in front of the
receiver, so every path ICE can find crosses a relay in both directions.

Playout: aiortc has none (an application renders frames as they come), so the
receiver logs each decoded frame with its arrival time and RTP timestamp, and
`place_frames` plays them out with a fixed delay that keeps 98% of frames on
time (plus 5 ms of slack), as a fixed jitter buffer would; late and lost
frames become silence.

Bitrate: aiortc's Opus encoder is fixed at 96 kb/s stereo. With `bitrate`
set, the sender process patches aiortc's OpusEncoder to encode mono at that
rate instead, so the two stacks can be compared at the same nominal rate. It
uses constrained VBR: libopus's unconstrained VBR (through FFmpeg) overshoots
on speech at 64 kb/s mono (~97 kb/s on the bench's sample, where constrained
gives ~57), while bisc's encoder (VBR with in-band FEC for 10% loss) stays
below its nominal rate; without the cap the "matched" aiortc would send far
more than bisc. The SDP still says opus/48000/2, as RFC 7587 requires;
the decoder plays a mono stream on both channels. Either way the sender
counts the Opus payload bytes it produced.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bisc.bench.impair import Addr, ImpairedRelay
from bisc.bench.peer_process import STEP_TIMEOUT, PeerProcess, emit, read_parent, spawn_module
from bisc.bench.pesq_score import delay_estimate, score
from bisc.bench.speech import RATE, read_wav, write_wav

FRAME = 960  # 20 ms at 48 kHz
LEAD_IN = 0.5  # s of silence before the speech: the relay is clean until media flows
TAIL = 1.0  # s of silence after it, so late frames still arrive
ON_TIME = 0.98
# Added to the on-time quantile: arrival times carry a few ms of scheduling noise,
# and without slack the quantile would by construction throw 2% of frames away.
PLAYOUT_MARGIN = 0.005

_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ )(127\.0\.0\.1) (\d+)( typ host.*)$", re.I | re.M)


def host_candidate(sdp: str) -> Addr:
    match = _CANDIDATE.search(sdp)
    if match is None:
        raise RuntimeError("no loopback host candidate in the SDP")
    return (match.group(2), int(match.group(3)))


def rewrite_candidates(sdp: str, addr: Addr) -> str:
    """The SDP with every loopback host candidate (and the m= port) pointing at addr."""
    host, port = addr
    out = _CANDIDATE.sub(lambda m: f"{m.group(1)}{host} {port}{m.group(4)}", sdp)
    return re.sub(r"^(m=audio )\d+", lambda m: f"{m.group(1)}{port}", out, flags=re.M)


def place_frames(
    arrivals: npt.NDArray[np.float64],
    pts: npt.NDArray[np.int64],
    chunks: list[npt.NDArray[np.int16]],
    t0: float,
    rate: int = RATE,
    on_time: float = ON_TIME,
) -> tuple[npt.NDArray[np.int16], float, int]:
    """(timeline starting at the sender's t0, playout delay in s, frames dropped as late)."""
    if len(chunks) == 0:
        return np.zeros(0, np.int16), 0.0, 0
    # RTP timestamps start at a random 32-bit value and may wrap.
    rel = ((pts - pts[0] + (1 << 31)) % (1 << 32)) - (1 << 31)
    rel = rel - rel.min()
    lateness = arrivals - t0 - rel / rate
    playout = float(np.quantile(lateness, on_time)) + PLAYOUT_MARGIN
    base = max(0, round(playout * rate))
    out = np.zeros(base + int(rel.max()) + max(len(c) for c in chunks), np.int16)
    late = 0
    for start, lag, chunk in zip(rel, lateness, chunks, strict=True):
        if lag > playout + 1e-9:
            late += 1
            continue
        out[base + start : base + start + len(chunk)] = chunk
    return out, playout, late


# ---------------------------------------------------------------- peer processes


def _loopback_only() -> None:
    # aioice gathers every interface except loopback; the benchmark must stay on 127.0.0.1.
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def _peer_connection() -> Any:
    from aiortc import RTCConfiguration, RTCPeerConnection

    _loopback_only()
    # An explicit empty list: with None aiortc falls back to a public STUN server.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def _timeline(speech: Path) -> npt.NDArray[np.int16]:
    samples, rate = read_wav(speech)
    if rate != RATE:
        raise RuntimeError(f"{speech}: expected {RATE} Hz, got {rate}")
    lead, tail = np.zeros(int(LEAD_IN * RATE), np.int16), np.zeros(int(TAIL * RATE), np.int16)
    return np.concatenate([lead, samples, tail])


def _patch_encoder(bitrate: int | None, counter: dict[str, int]) -> None:
    """Count the Opus payload aiortc produces; with a bitrate, encode mono at that rate."""
    import av
    from aiortc.codecs import opus

    init, encode = opus.OpusEncoder.__init__, opus.OpusEncoder.encode

    def patched_init(self: Any) -> None:
        init(self)
        if bitrate is not None:
            self.codec.bit_rate = bitrate
            self.codec.layout = "mono"
            self.codec.options = {"application": "voip", "vbr": "constrained"}
            self.resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE, frame_size=FRAME)

    def patched_encode(self: Any, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        payloads, timestamp = encode(self, frame, force_keyframe)
        counter["bytes"] += sum(len(p) for p in payloads)
        counter["packets"] += len(payloads)
        return payloads, timestamp

    opus.OpusEncoder.__init__ = patched_init  # type: ignore[method-assign]
    opus.OpusEncoder.encode = patched_encode  # type: ignore[method-assign]


async def _sender(speech: Path, bitrate: int | None = None) -> None:
    import av
    from aiortc import MediaStreamTrack, RTCSessionDescription

    encoded = {"bytes": 0, "packets": 0}
    _patch_encoder(bitrate, encoded)

    pcm = _timeline(speech)
    total = -(-len(pcm) // FRAME)
    pcm = np.concatenate([pcm, np.zeros(total * FRAME - len(pcm), np.int16)])
    started, finished = asyncio.Event(), asyncio.Event()
    clock: dict[str, float] = {}

    class WavTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.index = 0

        async def recv(self) -> Any:
            if not started.is_set():
                clock["t0"], clock["cpu0"] = time.monotonic(), time.process_time()
                started.set()
            # Real-time pacing: frame i leaves at t0 + 20 ms * i.
            delay = clock["t0"] + self.index * FRAME / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            i = self.index
            chunk = pcm[i * FRAME : (i + 1) * FRAME] if i < total else np.zeros(FRAME, np.int16)
            if i == total:
                clock["t1"], clock["cpu1"] = time.monotonic(), time.process_time()
                finished.set()
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, i * FRAME, Fraction(1, RATE)
            self.index += 1
            return frame

    pc = _peer_connection()
    pc.addTrack(WavTrack())
    await pc.setLocalDescription(await pc.createOffer())
    emit({"type": "offer", "sdp": pc.localDescription.sdp})
    answer = await read_parent()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    await started.wait()
    emit({"type": "started", "t0": clock["t0"]})
    await finished.wait()
    emit(
        {
            "type": "done",
            "cpu": clock["cpu1"] - clock["cpu0"],
            "wall": clock["t1"] - clock["t0"],
            "payload_bytes": encoded["bytes"],
            "packets": encoded["packets"],
        }
    )
    await read_parent()  # "quit": keep the call up until the receiver has stopped measuring
    await pc.close()


async def _receiver(record: Path) -> None:
    from aiortc import MediaStreamError, RTCSessionDescription

    pc = _peer_connection()
    arrivals: list[float] = []
    pts: list[int] = []
    chunks: list[npt.NDArray[np.int16]] = []
    clock: dict[str, float] = {}

    async def consume(track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if not arrivals:
                clock["t0"], clock["cpu0"] = now, time.process_time()
            # aiortc decodes to interleaved stereo s16; average the channels.
            data = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
            arrivals.append(now)
            pts.append(int(frame.pts))
            chunks.append(data.astype(np.int16))

    tasks: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))
    offer = await read_parent()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    emit({"type": "answer", "sdp": pc.localDescription.sdp})
    await read_parent()  # "stop"
    cpu, wall = time.process_time() - clock.get("cpu0", 0.0), time.monotonic() - clock.get("t0", 0.0)
    lengths = np.array([len(c) for c in chunks], np.int64)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    np.savez(
        record, arrivals=np.array(arrivals), pts=np.array(pts, np.int64), lengths=lengths, samples=samples
    )
    emit(
        {
            "type": "done",
            "cpu": cpu if arrivals else 0.0,
            "wall": wall if arrivals else 0.0,
            "frames": len(chunks),
        }
    )
    await pc.close()
    for task in tasks:
        task.cancel()


# ---------------------------------------------------------------- parent side


async def _spawn(python: str, *args: str) -> PeerProcess:
    return await spawn_module("bisc.bench.aiortc_voice", args, f"aiortc {args[0]} peer", python=python)


async def run_aiortc_once(
    speech: Path,
    out_wav: Path,
    loss: float,
    jitter_ms: float,
    seed: int = 1,
    python: str = sys.executable,
    bitrate: int | None = None,
) -> dict[str, Any]:
    """Send `speech` from one aiortc peer to another through impairing relays; measure the result.

    bitrate: None keeps aiortc's default (96 kb/s stereo); else mono Opus at this rate."""
    record = out_wav.with_suffix(".npz")
    sender = await _spawn(python, "send", str(speech), *([str(bitrate)] if bitrate else []))
    receiver = await _spawn(python, "recv", str(record))
    relays: list[ImpairedRelay] = []
    try:
        offer = await sender.read()
        # Clean during set-up: ICE and DTLS are not what is measured, and they
        # retransmit anyway; the impairment starts with the media.
        to_sender = await ImpairedRelay(host_candidate(offer["sdp"]), 0.0, 0.0, seed=seed).start()
        relays.append(to_sender)
        receiver.send({"type": "offer", "sdp": rewrite_candidates(offer["sdp"], to_sender.addr)})
        answer = await receiver.read()
        to_receiver = await ImpairedRelay(host_candidate(answer["sdp"]), 0.0, 0.0, seed=seed + 1000).start()
        relays.append(to_receiver)
        sender.send({"type": "answer", "sdp": rewrite_candidates(answer["sdp"], to_receiver.addr)})
        started = await sender.read()
        for relay in relays:
            relay.set_impairment(loss=loss, jitter_ms=jitter_ms)
        wire0 = wire_bytes(relays)
        sent = await sender.read(timeout=STEP_TIMEOUT + 60)
        wire = wire_bytes(relays) - wire0
        receiver.send({"type": "stop"})
        got = await receiver.read()
        sender.send({"type": "quit"})
        counters = [relay.counters() for relay in relays]
    finally:
        for relay in relays:
            relay.close()
        for peer in (sender, receiver):
            await peer.finish()
    data = np.load(record)
    chunks = np.split(data["samples"], np.cumsum(data["lengths"])[:-1]) if len(data["lengths"]) else []
    timeline, playout, late = place_frames(data["arrivals"], data["pts"], chunks, float(started["t0"]))
    write_wav(out_wav, timeline, RATE)
    forwarded = sum(c[d]["forwarded"] for c in counters for d in ("up", "down"))
    if forwarded < got["frames"] // 2:
        raise RuntimeError(f"media did not cross the relays: {counters}")
    cpu_send = 100.0 * sent["cpu"] / sent["wall"]
    cpu_recv = 100.0 * got["cpu"] / got["wall"] if got["wall"] else 0.0
    return {
        "pesq": score(speech, out_wav),
        "delay_ms": 1000.0 * (delay_estimate(speech, out_wav) - LEAD_IN),
        "cpu_pct": cpu_send + cpu_recv,
        "cpu_send_pct": cpu_send,
        "cpu_recv_pct": cpu_recv,
        "payload_kbps": 8.0 * sent["payload_bytes"] / (sent["packets"] * FRAME / RATE) / 1000.0
        if sent["packets"]
        else None,
        # Both directions through the relays (SRTP media, RTCP), UDP payload only.
        "wire_kbps": 8.0 * wire / sent["wall"] / 1000.0,
        "playout_ms": 1000.0 * playout,
        "frames": got["frames"],
        "late_frames": late,
        "relays": counters,
    }


def wire_bytes(relays: list[ImpairedRelay]) -> int:
    """UDP payload bytes forwarded so far by these relays, both directions."""
    return sum(relay.counters()[d]["forwarded_bytes"] for relay in relays for d in ("up", "down"))


def main(argv: list[str]) -> None:
    role, path, *rest = argv
    if role == "send":
        asyncio.run(_sender(Path(path), int(rest[0]) if rest else None))
    else:
        asyncio.run(_receiver(Path(path)))


if __name__ == "__main__":
    main(sys.argv[1:])
