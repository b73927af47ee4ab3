"""Benchmark cases for the hot paths, over every loaded implementation."""

from __future__ import annotations

import functools
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from bisc import hotpaths
from bisc.bench.timing import best_seconds, ops_per_second
from bisc.codec import bwe_sim, packet_spec

# A 20 ms Opus voice frame and a full video fragment of a 1200-byte datagram.
PAYLOAD_SIZES = (160, 1185)
FRAGMENTS = 100
MAX_DATAGRAM = 1200
JITTER_FRAMES = 1000
BWE_SECONDS = 20.0


@dataclass
class Row:
    hot_path: str
    case: str
    impl: str
    rate: float
    unit: str
    ratios: dict[str, float] = field(default_factory=dict)  # baseline impl -> rate ratio

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Target:
    description: str
    value: float
    goal: float

    @property
    def met(self) -> bool:
        return self.value >= self.goal


@dataclass
class BenchConfig:
    min_time: float = 0.5
    file_size: int = 1 << 30
    file_path: Path | None = None  # hash this file instead of a generated one
    hash_repeats: int = 3


def _with_ratios(rows: list[Row], baselines: tuple[str, ...]) -> list[Row]:
    by_impl = {r.impl: r.rate for r in rows}
    for row in rows:
        for base in baselines:
            if base in by_impl and base != row.impl:
                row.ratios[base] = row.rate / by_impl[base]
    return rows


def _packet_rows(cfg: BenchConfig) -> list[Row]:
    rows: list[Row] = []
    for size in PAYLOAD_SIZES:
        rows += _packet_rows_for(cfg, os.urandom(size))
    return rows


def _packet_rows_for(cfg: BenchConfig, payload: bytes) -> list[Row]:
    fields = (3, 123456, 987654, 2, 5, 1, payload)
    names = ("stream_id", "sequence", "timestamp", "fragment_index", "fragment_count", "flags")
    spec_fields = dict(zip(names, fields[:6], strict=True), version=1, payload=payload)
    datagram = hotpaths.SELECTION.loaded("packet")["python"].encode_packet(*fields)
    enc_case, dec_case = f"encode {len(payload)} B", f"decode {len(payload)} B"
    encode = [
        Row(
            "packet",
            enc_case,
            "construct",
            ops_per_second(functools.partial(packet_spec.spec_encode, spec_fields), cfg.min_time),
            "ops/s",
        )
    ]
    decode = [
        Row(
            "packet",
            dec_case,
            "construct",
            ops_per_second(functools.partial(packet_spec.spec_decode, datagram), cfg.min_time),
            "ops/s",
        )
    ]
    for impl, module in hotpaths.SELECTION.loaded("packet").items():
        encode.append(
            Row(
                "packet",
                enc_case,
                impl,
                ops_per_second(functools.partial(module.encode_packet, *fields), cfg.min_time),
                "ops/s",
            )
        )
        decode.append(
            Row(
                "packet",
                dec_case,
                impl,
                ops_per_second(functools.partial(module.decode_packet, datagram), cfg.min_time),
                "ops/s",
            )
        )
    return _with_ratios(encode, ("python", "construct")) + _with_ratios(decode, ("python", "construct"))


def _reassemble(module: ModuleType, datagrams: list[bytes]) -> Callable[[], object]:
    reassembler_cls = module.Reassembler

    def run() -> object:
        reassembler = reassembler_cls()
        frame = None
        for datagram in datagrams:
            frame = reassembler.push(datagram, 0.0)
        assert frame is not None
        return frame

    return run


def _fragment_rows(cfg: BenchConfig) -> list[Row]:
    payload = os.urandom(FRAGMENTS * (MAX_DATAGRAM - 15))
    loaded = hotpaths.SELECTION.loaded("fragment")
    datagrams = loaded["python"].fragment_frame(
        payload,
        stream_id=1,
        first_sequence=7,
        timestamp=90000,
        flags=1,
        max_datagram_size=MAX_DATAGRAM,
    )
    assert len(datagrams) == FRAGMENTS
    split: list[Row] = []
    join: list[Row] = []
    for impl, module in loaded.items():
        fragment_frame = module.fragment_frame

        def fragment(fragment_frame: Callable[..., list[bytes]] = fragment_frame) -> object:
            return fragment_frame(
                payload,
                stream_id=1,
                first_sequence=7,
                timestamp=90000,
                flags=1,
                max_datagram_size=MAX_DATAGRAM,
            )

        split.append(
            Row(
                "fragment",
                f"fragment {FRAGMENTS}-fragment frame",
                impl,
                ops_per_second(fragment, cfg.min_time),
                "frames/s",
            )
        )
        join.append(
            Row(
                "fragment",
                f"reassemble {FRAGMENTS}-fragment frame",
                impl,
                ops_per_second(_reassemble(module, datagrams), cfg.min_time),
                "frames/s",
            )
        )
    return _with_ratios(split, ("python",)) + _with_ratios(join, ("python",))


def _jitter_schedule() -> list[tuple[float, int, bytes]]:
    """1000 20 ms Opus packets over a path with 30 ms of jitter and 2% loss,
    interleaved with the device's pops: (time, sequence or -1 for a pop, payload)."""
    rng = random.Random(1)
    events: list[tuple[float, int, bytes]] = []
    for k in range(JITTER_FRAMES):
        if rng.random() >= 0.02:
            events.append((k * 0.02 + rng.uniform(0.0, 0.03), k, rng.randbytes(rng.randrange(40, 120))))
        events.append((k * 0.02 + 0.005, -1, b""))
    events.sort(key=lambda e: (e[0], e[1] < 0))
    return events


def _play(module: ModuleType, events: list[tuple[float, int, bytes]]) -> Callable[[], object]:
    buffer_cls = module.JitterBuffer

    def run() -> object:
        jb = buffer_cls()
        push = jb.push
        pop = jb.pop
        for now, seq, payload in events:
            if seq < 0:
                pop(now)
            else:
                push(seq, seq * 960, payload, now)
        return jb.stats()

    return run


def _jitter_rows(cfg: BenchConfig) -> list[Row]:
    events = _jitter_schedule()
    rows = [
        Row(
            "jitter",
            f"push+pop {JITTER_FRAMES} frames with jitter",
            impl,
            ops_per_second(_play(module, events), cfg.min_time) * JITTER_FRAMES,
            "frames/s",
        )
        for impl, module in hotpaths.SELECTION.loaded("jitter").items()
    ]
    return _with_ratios(rows, ("python",))


def _bwe_events() -> list[bwe_sim.Event]:
    """The inputs of a 20 s video call (recorded once, on the reference): 4 Mb/s dropping to
    1 Mb/s halfway, 1 % random loss; packets, loss reports and one estimate per frame."""
    events: list[bwe_sim.Event] = []
    reference = hotpaths.SELECTION.loaded("bwe")["python"].BandwidthEstimator(start_bitrate=2_000_000)
    bwe_sim.simulate(
        reference, BWE_SECONDS, bwe_sim.step(4e6, 1e6, BWE_SECONDS / 2), loss=0.01, events=events
    )
    return events


def _bwe_rows(cfg: BenchConfig) -> list[Row]:
    events = _bwe_events()
    rows: list[Row] = []
    for impl, module in hotpaths.SELECTION.loaded("bwe").items():

        def run(cls: Any = module.BandwidthEstimator) -> object:
            return bwe_sim.replay(cls(start_bitrate=2_000_000), events)

        rows.append(
            Row(
                "bwe",
                f"{BWE_SECONDS:.0f} s call, {len(events)} updates",
                impl,
                ops_per_second(run, cfg.min_time) * len(events),
                "updates/s",
            )
        )
    return _with_ratios(rows, ("python",))


def _write_test_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


@dataclass
class _HashFile:
    path: Path
    size: int


def _hash_file(cfg: BenchConfig) -> Iterator[_HashFile]:
    if cfg.file_path is not None:
        yield _HashFile(cfg.file_path, cfg.file_path.stat().st_size)
        return
    with tempfile.TemporaryDirectory(prefix="bisc-bench-") as tmp:
        path = Path(tmp) / "bench.bin"
        _write_test_file(path, cfg.file_size)
        yield _HashFile(path, cfg.file_size)


def _chunkhash_rows(cfg: BenchConfig) -> list[Row]:
    rows: list[Row] = []
    for target in _hash_file(cfg):
        chunks = -(-target.size // hotpaths.chunkhash.CHUNK_SIZE)
        loaded = hotpaths.SELECTION.loaded("chunkhash")
        # Read it once so every implementation hashes from the page cache.
        loaded["python"].hash_file_chunks(target.path, 0, chunks, 0)
        megabytes = target.size / 1e6
        for threads in (1, 2):
            for impl, module in loaded.items():
                seconds = best_seconds(
                    functools.partial(module.hash_file_chunks, target.path, 0, chunks, threads),
                    cfg.hash_repeats,
                )
                name = "hashlib" if impl == "python" else impl
                rows.append(
                    Row(
                        "chunkhash",
                        f"hash {megabytes:.0f} MB file",
                        f"{name} x{threads}",
                        megabytes / seconds,
                        "MB/s",
                    )
                )
    return _with_ratios(rows, ("hashlib x1",))


def run(cfg: BenchConfig) -> list[Row]:
    return _packet_rows(cfg) + _fragment_rows(cfg) + _jitter_rows(cfg) + _bwe_rows(cfg) + _chunkhash_rows(cfg)


def targets(rows: list[Row]) -> list[Target]:
    """The issue's performance targets, checked against this run's rows."""
    out: list[Target] = []
    for row in rows:
        if row.hot_path == "packet" and row.impl in ("cython", "rust"):
            out.append(
                Target(f"packet {row.case} {row.impl} vs construct", row.ratios.get("construct", 0.0), 20.0)
            )
            out.append(
                Target(f"packet {row.case} {row.impl} vs pure Python", row.ratios.get("python", 0.0), 3.0)
            )
        elif row.hot_path == "fragment" and row.case.startswith("reassemble") and row.impl != "python":
            out.append(Target(f"{row.case} {row.impl} vs pure Python", row.ratios.get("python", 0.0), 5.0))
        elif row.hot_path == "jitter" and row.impl != "python":
            out.append(
                Target(f"jitter {row.case} {row.impl} vs pure Python", row.ratios.get("python", 0.0), 5.0)
            )
        elif row.hot_path == "bwe" and row.impl != "python":
            out.append(
                Target(f"bwe {row.case} {row.impl} vs pure Python", row.ratios.get("python", 0.0), 5.0)
            )
        elif row.hot_path == "chunkhash" and not row.impl.startswith("hashlib"):
            goal = 0.95 if row.impl.endswith("x1") else 1.7
            out.append(
                Target(f"{row.case} {row.impl} vs hashlib x1", row.ratios.get("hashlib x1", 0.0), goal)
            )
    return out
