"""`bisc bench --suite voice`: delay, quality and CPU of bisc voice calls on loopback.

Four measurements, each with real nodes, real aioquic and real Opus, every
peer in its own process (so its CPU time is its own):

- delay on loopback: two peers in a call, each sending speech (the espeak-ng
  sample of the quality table; a tone without espeak-ng); the end-to-end
  delay of every played frame (capture on the sender's clock, mapped through
  its reports, to the receiver's playout, device buffers excluded) as the
  receivers record it (`VoiceReceiver.e2e_samples`), both directions pooled,
  over the steady window: the first STEADY_SKIP seconds of playout dropped;
  and again with tones, the worst case for a buffer that changes its delay
  in pauses (a tone has none), reported without a target;
- the same with the joiner's link through `ImpairedRelay` (jitter and loss,
  both directions; clean until the voice starts);
- voice quality: the bisc-vs-aiortc table of `voice_quality` (wide-band PESQ,
  mouth-to-ear delay, CPU, Opus payload and wire bitrate) under jitter and loss;
- CPU per call: three peers, each sending a tone and receiving (decoding,
  mixing) the other two, audio out "none"; CPU seconds over wall seconds of each
  process as percent of one core.

Targets are reported beside the figures (met or MISS); nothing here fails on a miss.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bisc.bench.impair import ImpairedRelay
from bisc.bench.peer_process import STEP_TIMEOUT, PeerProcess, emit, read_parent, run_peer, spawn_module, step

STEADY_SKIP = 2.0  # s of playout left out of the delay figures (start-up, buffer settling)
FRAME_S = 0.02
MESH_TIMEOUT = 20.0
TONES = (300, 440, 660, 880, 1000)

# (figure, goal in ms) for the delay measurements.
LOOPBACK_TARGETS = (("p50", 40.0), ("p95", 60.0))
IMPAIRED_TARGETS = (("p95", 150.0),)
# Minimum wide-band PESQ of bisc at each loss rate (with 30 ms of jitter).
PESQ_TARGETS = {0.0: 4.0, 0.05: 3.5, 0.10: 3.0}


@dataclass(frozen=True)
class VoiceBenchConfig:
    delay_seconds: float = 12.0
    impaired_loss: float = 0.05
    impaired_jitter_ms: float = 30.0
    quality_losses: tuple[float, ...] = (0.0, 0.05, 0.10)
    quality_jitter_ms: float = 30.0
    quality_stacks: tuple[str, ...] = ("bisc", "aiortc", "aiortc-default")
    speech_seconds: float | None = None  # None: the whole speech sample (~10 s)
    cpu_peers: int = 3
    cpu_seconds: float = 10.0
    delay_source: str = "speech"  # "speech" (falls back to tones without espeak-ng) or "tone"
    quality: str = "medium"
    quality_repeats: int = 3  # calls per PESQ row, each losing other packets: one call is too noisy

    @classmethod
    def quick(cls) -> VoiceBenchConfig:
        return cls(
            delay_seconds=4.0,
            quality_losses=(0.05,),
            quality_stacks=("bisc", "aiortc"),
            speech_seconds=4.0,
            cpu_seconds=4.0,
            quality_repeats=1,
        )


# ---------------------------------------------------------------- peer process


def _stats_json(stats: object) -> Any:
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    return repr(stats)


async def _peer(cfg: dict[str, Any]) -> None:
    """One node in a call: create (or join, maybe through a relay), wait for the mesh, talk, report."""
    from bisc.app import Node
    from bisc.ticket import BiscTicket, EndpointAddr

    expected = int(cfg["peers"]) - 1
    async with Node(
        data_dir=Path(cfg["data_dir"]), display_name=f"p{cfg['index']}", bind="127.0.0.1:0"
    ) as node:
        if cfg["ticket"] is None:
            channel: Any = await node.create_channel()
            emit({"type": "ticket", "ticket": channel.ticket().to_text()})
        else:
            ticket = BiscTicket.parse(cfg["ticket"])
            if cfg["relay"]:
                boot = ticket.bootstrap[0]
                host, port = next((str(ip), p) for ip, p in boot.addrs if ip.version == 4)
                emit({"type": "relay", "target": [host, port]})
                reply = await read_parent()
                addr = (str(reply["addr"][0]), int(reply["addr"][1]))
                ticket = BiscTicket(ticket.secret, (EndpointAddr.of(boot.endpoint_id, [addr]),))
            channel = await node.join(ticket)
        deadline = time.monotonic() + MESH_TIMEOUT
        while len(channel.members) < expected or channel.connected_peers != set(channel.members):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no full mesh of {expected + 1} peers in {MESH_TIMEOUT} s")
            await asyncio.sleep(0.02)
        emit({"type": "ready"})
        await read_parent()  # "go": everyone starts the voice at once
        cpu0, t0 = time.process_time(), time.monotonic()
        voice: Any = await channel.start_voice(
            audio_in=cfg["audio_in"], audio_out=cfg["audio_out"], quality=cfg["quality"]
        )
        emit({"type": "media"})
        await asyncio.sleep(float(cfg["seconds"]))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        receivers = voice.receivers()
        result = {
            "type": "done",
            "cpu": cpu,
            "wall": wall,
            "payload_bytes": voice.sender.bytes_encoded,
            "frames": voice.sender.frames_encoded,
            "e2e": {str(peer): r.e2e_samples() for peer, r in receivers.items()},
            "stats": {str(peer): _stats_json(s) for peer, s in voice.stats().items()},
        }
        emit(result)
        await read_parent()  # "quit": keep sending until every peer has measured
        await channel.stop_voice()


async def _spawn(cfg: dict[str, Any], root: Path) -> PeerProcess:
    index = cfg["index"]
    return await spawn_module(
        "bisc.bench.voice", ["--peer", json.dumps(cfg)], f"voice peer p{index}", log=root / f"p{index}.log"
    )


async def run_call_async(
    peers: int = 2,
    seconds: float = 4.0,
    *,
    impairment: tuple[float, float] | None = None,
    quality: str = "medium",
    audio_out: str = "none",
    audio_in: str | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """A voice call of `peers` processes, each sending a tone (or `audio_in`) to all others for `seconds`.

    impairment=(loss, jitter_ms) puts every joiner's first link (to the creator)
    through an ImpairedRelay, clean until the voice starts. Returns per peer:
    cpu and wall seconds of the voice phase, Opus payload bytes and frames sent,
    e2e delay samples (s) per remote peer, receive stats; and the relay counters.
    """
    with tempfile.TemporaryDirectory(prefix="bisc-voice-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        procs: list[PeerProcess] = []
        relays: list[ImpairedRelay] = []

        def config(index: int, ticket: str | None) -> dict[str, Any]:
            return {
                "index": index,
                "peers": peers,
                "seconds": seconds,
                "audio_in": audio_in or f"tone:{TONES[index % len(TONES)]}",
                "audio_out": audio_out if audio_out == "none" else f"{audio_out}.p{index}.wav",
                "quality": quality,
                "ticket": ticket,
                "relay": impairment is not None,
                "data_dir": str(root / f"node{index}"),
            }

        try:
            procs.append(await _spawn(config(0, None), root))
            ticket = (await procs[0].expect("ticket"))["ticket"]
            for i in range(1, peers):
                procs.append(await _spawn(config(i, ticket), root))
            for proc in procs[1:]:
                msg = await proc.read()
                if msg["type"] == "relay":
                    relay = await ImpairedRelay(tuple(msg["target"]), 0.0, 0.0, seed=len(relays) + 1).start()
                    relays.append(relay)
                    proc.send({"addr": list(relay.addr)})
                    msg = await proc.read()
                if msg["type"] != "ready":
                    raise RuntimeError(f"voice peer {proc.name}: expected ready, got {msg['type']}")
            await procs[0].expect("ready")
            await step(procs, "go", "media")
            if impairment is not None:
                for relay in relays:
                    relay.set_impairment(loss=impairment[0], jitter_ms=impairment[1])
            results = await step(procs, None, "done", STEP_TIMEOUT + seconds)
            counters = [relay.counters() for relay in relays]
            await step(procs, "quit", None)
        finally:
            for relay in relays:
                relay.close()
            for proc in procs:
                await proc.finish()
    if impairment is not None and not all(c["up"]["forwarded"] and c["down"]["forwarded"] for c in counters):
        raise RuntimeError(f"voice traffic did not cross the relays: {counters}")
    return {
        "peers": [
            {
                "cpu_s": r["cpu"],
                "wall_s": r["wall"],
                "cpu_pct": 100.0 * r["cpu"] / r["wall"],
                "payload_kbps": 8.0 * r["payload_bytes"] / (r["frames"] * FRAME_S) / 1000.0
                if r["frames"]
                else None,
                "e2e": r["e2e"],
                "stats": r["stats"],
            }
            for r in results
        ],
        "relays": counters,
    }


def run_call(peers: int = 2, seconds: float = 4.0, **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(run_call_async(peers, seconds, **kwargs))


# ---------------------------------------------------------------- figures


def quantile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of non-empty samples."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def steady_delays(call: dict[str, Any], skip: float = STEADY_SKIP) -> list[float]:
    """Every receiver's e2e samples in s, pooled, without each one's first `skip` s of playout."""
    first = round(skip / FRAME_S)
    return [d for peer in call["peers"] for samples in peer["e2e"].values() for d in samples[first:]]


def delay_figures(call: dict[str, Any], skip: float = STEADY_SKIP) -> dict[str, Any]:
    delays = steady_delays(call, skip)
    if not delays:
        raise RuntimeError("no end-to-end delay samples in the steady window")
    streams = [s for peer in call["peers"] for s in peer["stats"].values() if isinstance(s, dict)]
    return {
        "p50_ms": 1000.0 * quantile(delays, 0.50),
        "p95_ms": 1000.0 * quantile(delays, 0.95),
        "max_ms": 1000.0 * max(delays),
        "frames": len(delays),
        "streams": sum(len(peer["e2e"]) for peer in call["peers"]),
        "concealed": sum(int(s.get("concealed", 0)) for s in streams),
        "cpu_pct": [p["cpu_pct"] for p in call["peers"]],
        "payload_kbps": [p["payload_kbps"] for p in call["peers"]],
    }


def cpu_figures(call: dict[str, Any]) -> dict[str, Any]:
    per_peer = [p["cpu_pct"] for p in call["peers"]]
    return {
        "peers": len(per_peer),
        "cpu_pct": per_peer,
        "cpu_pct_mean": statistics.fmean(per_peer),
        "cpu_pct_total": sum(per_peer),
        "wall_s": statistics.fmean(p["wall_s"] for p in call["peers"]),
        "streams_received": [len(p["e2e"]) for p in call["peers"]],
        "payload_kbps": [p["payload_kbps"] for p in call["peers"]],
    }


def _target(name: str, value: float | None, goal: float, higher_is_better: bool = False) -> dict[str, Any]:
    met = value is not None and (value >= goal if higher_is_better else value <= goal)
    return {"target": name, "value": value, "goal": goal, "met": met}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    loop = report.get("delay_loopback", {})
    for key, goal in LOOPBACK_TARGETS:
        if f"{key}_ms" in loop:
            out.append(_target(f"loopback e2e {key} ms", loop[f"{key}_ms"], goal))
    imp = report.get("delay_impaired", {})
    for key, goal in IMPAIRED_TARGETS:
        if f"{key}_ms" in imp:
            name = f"e2e {key} ms, {imp['jitter_ms']:.0f} ms jitter + {imp['loss']:.0%} loss"
            out.append(_target(name, imp[f"{key}_ms"], goal))
    for row in report.get("quality", []):
        pesq_goal = PESQ_TARGETS.get(round(row["loss"], 4))
        if row["stack"] == "bisc" and pesq_goal is not None:
            name = f"bisc PESQ-WB, {row['jitter_ms']:.0f} ms jitter + {row['loss']:.0%} loss"
            out.append(_target(name, row.get("pesq"), pesq_goal, higher_is_better=True))
    return out


# ---------------------------------------------------------------- the suite


def run(quick: bool = False, config: VoiceBenchConfig | None = None) -> dict[str, Any]:
    cfg = config or (VoiceBenchConfig.quick() if quick else VoiceBenchConfig())
    report: dict[str, Any] = {"config": dataclasses.asdict(cfg)}

    def attempt(key: str, fn: Any) -> None:
        try:
            report[key] = fn()
        except Exception as exc:  # one failed measurement is reported, the others still run
            report[key] = {"error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}

    with tempfile.TemporaryDirectory(prefix="bisc-voice-") as tmp:
        source = _delay_source(cfg, Path(tmp))
        report["delay_source"] = "speech" if source else "tone"
        attempt(
            "delay_loopback",
            lambda: delay_figures(run_call(2, cfg.delay_seconds, quality=cfg.quality, audio_in=source)),
        )
        if source:
            attempt(
                "delay_loopback_tone",
                lambda: delay_figures(run_call(2, cfg.delay_seconds, quality=cfg.quality)),
            )
        attempt(
            "delay_impaired",
            lambda: (
                {"loss": cfg.impaired_loss, "jitter_ms": cfg.impaired_jitter_ms}
                | delay_figures(
                    run_call(
                        2,
                        cfg.delay_seconds,
                        impairment=(cfg.impaired_loss, cfg.impaired_jitter_ms),
                        quality=cfg.quality,
                        audio_in=source,
                    )
                )
            ),
        )
    report["quality"] = _quality(cfg)
    attempt("cpu", lambda: cpu_figures(run_call(cfg.cpu_peers, cfg.cpu_seconds, quality=cfg.quality)))
    report["targets"] = targets(report)
    return report


def _delay_source(cfg: VoiceBenchConfig, root: Path) -> str | None:
    """The speech sample's path for the delay calls, or None for tones."""
    from bisc.bench.speech import espeak_available, speech_wav

    if cfg.delay_source != "speech" or not espeak_available():
        return None
    return str(speech_wav(root / "cache"))


def _quality(cfg: VoiceBenchConfig) -> list[dict[str, Any]]:
    from bisc.bench.speech import espeak_available

    if not espeak_available():
        return [
            {
                "stack": s,
                "loss": loss,
                "jitter_ms": cfg.quality_jitter_ms,
                "error": "espeak-ng is not installed",
            }
            for s in cfg.quality_stacks
            for loss in cfg.quality_losses
        ]
    from bisc.bench.voice_quality import run_voice_quality

    rows = run_voice_quality(
        stacks=cfg.quality_stacks,
        losses=cfg.quality_losses,
        jitter_ms=cfg.quality_jitter_ms,
        seconds=cfg.speech_seconds,
        quality=cfg.quality,
        repeats=cfg.quality_repeats,
    )
    # The raw per-stream stats and relay counters are for debugging, not the report.
    return [{k: v for k, v in row.items() if k not in ("stats", "relays")} for row in rows]


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_report(report: dict[str, Any]) -> str:
    from bisc.bench.voice_quality import format_table

    cfg = report["config"]
    lines: list[str] = []
    goals = dict(LOOPBACK_TARGETS)
    loop = report.get("delay_loopback", {})
    lines.append(
        f"\nVoice end-to-end delay, 2 peers on loopback, each sending {report.get('delay_source', 'tone')}, "
        f"{cfg['delay_seconds']:g} s call (capture to playout, both directions, first {STEADY_SKIP:g} s "
        "skipped):"
    )
    lines.extend(_delay_lines(loop, goals))
    tone = report.get("delay_loopback_tone")
    if tone:
        lines.append(
            "The same with tones (no pause: the 80 ms start is cut only after 3 s without one; no target):"
        )
        lines.extend(_delay_lines(tone, {}))
    imp = report.get("delay_impaired", {})
    lines.append(
        f"\nThe same through the impairment relay ({cfg['impaired_jitter_ms']:g} ms jitter, "
        f"{cfg['impaired_loss']:.0%} loss, both directions):"
    )
    lines.extend(_delay_lines(imp, dict(IMPAIRED_TARGETS)))
    from bisc.media.voice_sender import QUALITY_BITRATES

    nominal = QUALITY_BITRATES.get(cfg["quality"], 0) / 1000
    lines.append(
        f"\nVoice quality, {cfg['quality_jitter_ms']:g} ms jitter (bisc {cfg['quality']} preset, "
        f"{nominal:g} kb/s VBR mono + FEC; aiortc: mono Opus at the same nominal rate, constrained VBR; "
        "aiortc-default: its 96 kb/s stereo); "
        f"each row the mean of {cfg.get('quality_repeats', 1)} calls with different losses:"
    )
    lines.append(format_table(report.get("quality", [])))
    pesq = ", ".join(f"{g:.1f} at {loss:.0%}" for loss, g in PESQ_TARGETS.items())
    lines.append(f"  PESQ-WB targets for bisc: >= {pesq} loss")
    cpu = report.get("cpu", {})
    lines.append(
        f"\nCPU per call: {cfg['cpu_peers']} peers, one process each, each sending a tone and "
        f"receiving the others, audio out none, {cfg['cpu_seconds']:g} s:"
    )
    if "error" in cpu:
        lines.append(f"  failed: {cpu['error']}")
    elif cpu:
        per = "  ".join(f"p{i} {v:.1f}%" for i, v in enumerate(cpu["cpu_pct"]))
        lines.append(f"  core-percent per peer: {per}")
        lines.append(
            f"  mean {cpu['cpu_pct_mean']:.1f}% per peer, total {cpu['cpu_pct_total']:.1f}% of one core"
        )
        kbps = ", ".join(_ms(v) for v in cpu["payload_kbps"])
        lines.append(
            f"  streams received per peer: {cpu['streams_received']}; Opus payload kb/s sent: {kbps}"
        )
    lines.append("\nVoice targets:")
    for t in report.get("targets", []):
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"  {'met ' if t['met'] else 'MISS'}  {t['target']}: {value} (goal {t['goal']:g})")
    return "\n".join(lines)


def _delay_lines(fig: dict[str, Any], goals: dict[str, float]) -> list[str]:
    if "error" in fig:
        return [f"  failed: {fig['error']}"]
    if not fig:
        return ["  not run"]
    out = []
    for key in ("p50", "p95"):
        value = fig[f"{key}_ms"]
        goal = goals.get(key)
        verdict = "" if goal is None else f"  target <= {goal:g}  {'met' if value <= goal else 'MISS'}"
        out.append(f"  {key}: {value:6.1f} ms{verdict}")
    cpu = ", ".join(f"{v:.1f}%" for v in fig["cpu_pct"])
    out.append(
        f"  max {fig['max_ms']:.1f} ms over {fig['frames']} frames of {fig['streams']} streams; "
        f"{fig['concealed']} concealed; CPU per peer {cpu}"
    )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bisc.bench.voice", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # internal: one peer process
    args = parser.parse_args(argv)
    if args.peer:
        run_peer(_peer, json.loads(args.peer))
        return
    report = run(quick=args.quick)
    print(json.dumps(report, indent=1, default=str) if args.json else format_report(report))


if __name__ == "__main__":
    main()
