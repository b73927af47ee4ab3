"""Voice quality of bisc against aiortc under loss and jitter, in one run.

For each stack and loss rate, a speech sample is sent from one peer to another
on loopback through `ImpairedRelay` (loss, 0..jitter_ms of uniform jitter, both
directions), recorded at the receiver and scored: wide-band PESQ, one-way
mouth-to-ear delay (cross-correlation), CPU of the peer processes as
percent of one core (both peers added up; the relay runs in this process and
is not counted), and bitrate: the sender's Opus payload and the UDP payload
through the relays in both directions (media plus feedback, no IP/UDP headers).

Stacks: "bisc" at its quality preset (--quality, default medium = 64 kb/s
VBR mono with in-band FEC); "aiortc" patched to mono Opus at the same
nominal rate (constrained VBR); "aiortc-default" as aiortc ships (96 kb/s stereo, no FEC).

    python -m bisc.bench.voice_quality [--stacks bisc,aiortc,aiortc-default] [--losses 0,0.05,0.1]
        [--jitter-ms 30] [--quality medium] [--seconds S] [--workdir DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bisc.bench.aiortc_voice import run_aiortc_once, wire_bytes
from bisc.bench.impair import Addr, ImpairedRelay
from bisc.bench.pesq_score import delay_estimate, score
from bisc.bench.speech import read_wav, speech_wav, write_wav
from bisc.media.voice_sender import QUALITY_BITRATES

RelayFactory = Callable[[Addr], Awaitable[Addr]]
TAIL = 1.5  # s recorded after the speech ends
PEER_TIMEOUT = 60.0


async def run_bisc_once(
    speech_wav: Path,
    out_wav: Path,
    relay_factory: RelayFactory,
    seconds: float,
    on_media: Callable[[], Awaitable[None]] | None = None,
    quality: str = "medium",
) -> dict[str, Any]:
    """Two bisc nodes in this process, b joining a through a relay; a sends speech_wav to b.

    Returns CPU and wall seconds of the voice phase, the offset of the sender's
    start within b's recording (to turn a lag into a delay) and b's stats.
    """
    from bisc.app import Node
    from bisc.ticket import BiscTicket, EndpointAddr

    with tempfile.TemporaryDirectory() as tmp:
        dir_a, dir_b = Path(tmp) / "a", Path(tmp) / "b"
        async with (
            Node(data_dir=dir_a, display_name="a", bind="127.0.0.1:0") as a,
            Node(data_dir=dir_b, display_name="b", bind="127.0.0.1:0") as b,
        ):
            # Typed Any so this module does not pin the voice API's exact signatures.
            ch_a: Any = await a.create_channel()
            ticket = ch_a.ticket()
            boot = ticket.bootstrap[0]
            host, port = next((str(ip), p) for ip, p in boot.addrs if ip.version == 4)
            relay_addr = await relay_factory((host, port))
            via_relay = BiscTicket(ticket.secret, (EndpointAddr.of(boot.endpoint_id, [relay_addr]),))
            ch_b: Any = await b.join(via_relay)
            cpu0, t0 = time.process_time(), time.monotonic()
            voice_b = await ch_b.start_voice(audio_in="none", audio_out=str(out_wav))
            # The call is set up (offer, answer, the first packets through) before the speech starts,
            # as aiortc's is before its first frame: a sample's first word lost to the set-up would
            # be scored, not the transport.
            voice_a = await ch_a.start_voice(audio_in="silence", audio_out="none", quality=quality)
            if on_media is not None:
                await on_media()
            await _until_heard(voice_b)
            t_a = time.monotonic()
            await voice_a.set_input(str(speech_wav))
            await asyncio.sleep(seconds + TAIL)
            stats = voice_b.stats()
            cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
            encoded = (voice_a.sender.bytes_encoded, voice_a.sender.frames_encoded)
            e2e = [r.e2e_samples() for r in voice_b.receivers().values()]
            await ch_a.stop_voice()
            await ch_b.stop_voice()
            del voice_a
    return {
        "cpu": cpu,
        "wall": wall,
        "sender_offset": t_a - t0,
        "payload_bytes": encoded[0],
        "frames": encoded[1],
        "e2e": e2e[0] if e2e else [],
        "stats": {
            str(k): dataclasses.asdict(v)
            if dataclasses.is_dataclass(v) and not isinstance(v, type)
            else repr(v)
            for k, v in stats.items()
        },
    }


async def _until_heard(voice: Any, timeout: float = 10.0) -> None:
    """Until `voice` plays a peer's stream (its jitter buffer has played a frame)."""
    deadline = time.monotonic() + timeout
    while not any(r.jitter.stats()["frames"] for r in voice.receivers().values()):
        if time.monotonic() > deadline:
            raise RuntimeError("the receiver heard nothing from the sender")
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- bisc peer process


async def _bisc_peer(speech: Path, out_wav: Path, seconds: float, quality: str = "medium") -> None:
    async def relay(target: Addr) -> Addr:
        _emit({"type": "relay", "target": list(target)})
        reply = await _read_stdin()
        return (str(reply["addr"][0]), int(reply["addr"][1]))

    async def media() -> None:
        _emit({"type": "media"})

    try:
        result = await run_bisc_once(speech, out_wav, relay, seconds, on_media=media, quality=quality)
    except Exception as exc:
        _emit({"type": "error", "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
        return
    _emit({"type": "done", **result})


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


async def _read_stdin() -> dict[str, Any]:
    line = await asyncio.to_thread(sys.stdin.readline)
    msg: dict[str, Any] = json.loads(line)
    return msg


async def _run_bisc(
    speech: Path,
    out_wav: Path,
    loss: float,
    jitter_ms: float,
    seconds: float,
    quality: str = "medium",
    seed: int = 1,
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bisc.bench.voice_quality",
        "--peer",
        f"{speech}|{out_wav}|{seconds}|{quality}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    relays: list[ImpairedRelay] = []
    wire0, t_media = 0, time.monotonic()
    try:
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), PEER_TIMEOUT + seconds)
            if not line:
                err = (await proc.stderr.read()).decode(errors="replace")[-1500:]
                raise RuntimeError(f"bisc peer exited ({await proc.wait()}): {err}")
            msg = json.loads(line)
            if msg["type"] == "relay":
                # Clean until the voice starts, as for aiortc.
                relay_seed = seed + 1000 * len(relays)
                relay = await ImpairedRelay(tuple(msg["target"]), 0.0, 0.0, seed=relay_seed).start()
                relays.append(relay)
                proc.stdin.write((json.dumps({"addr": list(relay.addr)}) + "\n").encode())
            elif msg["type"] == "media":
                for relay in relays:
                    relay.set_impairment(loss=loss, jitter_ms=jitter_ms)
                wire0, t_media = wire_bytes(relays), time.monotonic()
            elif msg["type"] == "error":
                raise RuntimeError(f"bisc peer failed: {msg['error']}\n{msg['trace']}")
            else:
                break
        wire, media_wall = wire_bytes(relays) - wire0, time.monotonic() - t_media
        counters = [relay.counters() for relay in relays]
    finally:
        for relay in relays:
            relay.close()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    if not any(c["up"]["forwarded"] and c["down"]["forwarded"] for c in counters):
        raise RuntimeError(f"bisc traffic did not cross the relay: {counters}")
    return {
        "pesq": score(speech, out_wav),
        "delay_ms": 1000.0 * (delay_estimate(speech, out_wav) - msg["sender_offset"]),
        "cpu_pct": 100.0 * msg["cpu"] / msg["wall"],
        "payload_kbps": 8.0 * msg["payload_bytes"] / (msg["frames"] * 0.02) / 1000.0
        if msg["frames"]
        else None,
        # Both directions through the relay (QUIC datagrams, acks, reports), UDP payload only.
        "wire_kbps": 8.0 * wire / media_wall / 1000.0,
        # bisc's own capture-to-playout estimate, to cross-check delay_ms.
        "e2e_ms": next((s.get("e2e_ms") for s in msg["stats"].values() if isinstance(s, dict)), None),
        "relays": counters,
        "stats": msg["stats"],
    }


# ---------------------------------------------------------------- driver


def _sample(workdir: Path, seconds: float | None) -> Path:
    full = speech_wav(workdir / "cache")
    if seconds is None:
        return full
    samples, rate = read_wav(full)
    cut = workdir / f"speech-{seconds:g}s.wav"
    write_wav(cut, samples[: int(seconds * rate)], rate)
    return cut


async def run_voice_quality_async(
    stacks: Sequence[str] = ("bisc", "aiortc"),
    losses: Sequence[float] = (0.0, 0.05, 0.10),
    jitter_ms: float = 30.0,
    seconds: float | None = None,
    workdir: Path | None = None,
    seed: int = 1,
    quality: str = "medium",
    repeats: int = 1,
) -> list[dict[str, Any]]:
    """One row per stack and loss rate; with repeats > 1, the mean of that many calls whose losses and
    jitter come from different seeds (which frames a loss hits moves PESQ by several tenths)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        speech = _sample(root, seconds)
        length = len(read_wav(speech)[0]) / 48000
        rows: list[dict[str, Any]] = []
        for stack in stacks:
            for loss in losses:
                runs = []
                for i in range(max(1, repeats)):
                    out = root / f"{stack}-loss{loss:g}-jitter{jitter_ms:g}-{i}.wav"
                    run = await _run_once(stack, speech, out, loss, jitter_ms, length, quality, seed + i)
                    runs.append(run)
                rows.append({"stack": stack, "loss": loss, "jitter_ms": jitter_ms} | _mean_of(runs))
        return rows


async def _run_once(
    stack: str, speech: Path, out: Path, loss: float, jitter_ms: float, length: float, quality: str, seed: int
) -> dict[str, Any]:
    try:
        if stack == "aiortc":
            bitrate = QUALITY_BITRATES[quality]
            return await run_aiortc_once(speech, out, loss, jitter_ms, seed=seed, bitrate=bitrate)
        if stack == "aiortc-default":
            return await run_aiortc_once(speech, out, loss, jitter_ms, seed=seed)
        if stack == "bisc":
            return await _run_bisc(speech, out, loss, jitter_ms, length, quality, seed=seed)
        raise ValueError(f"unknown stack {stack!r}")
    except (RuntimeError, OSError, TimeoutError, ImportError) as exc:
        # One failed call (a missing aiortc, a peer that died) is a row, not the end of the run.
        return {"pesq": None, "delay_ms": None, "cpu_pct": None, "error": _short(exc)}


_AVERAGED = ("pesq", "delay_ms", "cpu_pct", "payload_kbps", "wire_kbps", "e2e_ms")


def _mean_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's fields, with the figures averaged over the runs that have them; the PESQ of
    every run and the lowest one beside the mean."""
    if len(runs) == 1:
        return runs[0]
    row = dict(runs[0])
    for key in _AVERAGED:
        values = [r[key] for r in runs if r.get(key) is not None]
        row[key] = sum(values) / len(values) if values else None
    scores = [r["pesq"] for r in runs if r.get("pesq") is not None]
    row["pesq_runs"] = scores
    row["pesq_min"] = min(scores) if scores else None
    errors = [r["error"] for r in runs if r.get("error")]
    if errors and scores:
        row["error"] = f"{len(errors)} of {len(runs)} calls failed: {errors[0]}"
    return row


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__


def run_voice_quality(
    stacks: Sequence[str] = ("bisc", "aiortc"),
    losses: Sequence[float] = (0.0, 0.05, 0.10),
    jitter_ms: float = 30.0,
    seconds: float | None = None,
    workdir: Path | None = None,
    quality: str = "medium",
    repeats: int = 1,
) -> list[dict[str, Any]]:
    """Rows {stack, loss, jitter_ms, pesq, delay_ms, cpu_pct, payload_kbps, wire_kbps, ...};
    seconds=None sends the whole sample; repeats > 1 averages that many calls (pesq_min, pesq_runs)."""
    return asyncio.run(
        run_voice_quality_async(stacks, losses, jitter_ms, seconds, workdir, quality=quality, repeats=repeats)
    )


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    def cell(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        f"{'stack':<14} {'loss':>5} {'jitter':>7} {'PESQ-WB':>8} {'delay ms':>9} {'CPU %':>6} "
        f"{'opus kb/s':>9} {'wire kb/s':>9}  note"
    ]
    for r in rows:
        lines.append(
            f"{r['stack']:<14} {r['loss']:>5.0%} {r['jitter_ms']:>5.0f}ms {cell(r.get('pesq'), '8.2f')} "
            f"{cell(r.get('delay_ms'), '9.0f')} {cell(r.get('cpu_pct'), '6.1f')} "
            f"{cell(r.get('payload_kbps'), '9.1f')} {cell(r.get('wire_kbps'), '9.1f')}  {_note(r)}"
        )
    return "\n".join(lines)


def _note(row: dict[str, Any]) -> str:
    runs = row.get("pesq_runs")
    spread = f"PESQ of {len(runs)} calls: " + " ".join(f"{p:.2f}" for p in runs) if runs else ""
    return "; ".join(x for x in (spread, row.get("error", "")) if x)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bisc.bench.voice_quality", description=__doc__)
    parser.add_argument("--stacks", default="bisc,aiortc,aiortc-default")
    parser.add_argument("--quality", default="medium", choices=sorted(QUALITY_BITRATES))
    parser.add_argument("--losses", default="0,0.05,0.1")
    parser.add_argument("--jitter-ms", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=None, help="cut the speech sample to this length")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the WAV files here")
    parser.add_argument("--repeats", type=int, default=1, help="calls per row, each with other losses")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # internal: run the bisc peers
    args = parser.parse_args(argv)
    if args.peer:
        speech, out, seconds, quality = args.peer.split("|")
        asyncio.run(_bisc_peer(Path(speech), Path(out), float(seconds), quality))
        return
    rows = run_voice_quality(
        stacks=[s for s in args.stacks.split(",") if s],
        losses=[float(x) for x in args.losses.split(",")],
        jitter_ms=args.jitter_ms,
        seconds=args.seconds,
        workdir=args.workdir,
        quality=args.quality,
        repeats=args.repeats,
    )
    print(json.dumps(rows, indent=1, default=str) if args.json else format_table(rows))


if __name__ == "__main__":
    main()
