"""Audio redundancy (RED): voice payloads that carry copies of the frames before them.

Opus in-band FEC repairs a lost frame only coarsely (a low-rate re-encoding);
on a lossy link the sender can instead put a copy of the previous frame's
whole Opus packet in each datagram, and a single loss is then played back as
if it had not happened (WebRTC's audio RED, with a simpler framing). It costs
the bitrate once more per copy, so the sender turns it on only while its
receivers report loss (`RedundancyPolicy`).

Payload of a stream offered as codec "opus-red" (sans-IO, bounded):

    u8          number of copies n (0..MAX_COPIES)
    n x u16 BE  the copies' lengths, nearest frame first (1..MAX_COPY_BYTES each)
    copies      in the same order: copy i is frame sequence - i
    rest        the frame's own Opus packet (at least one byte)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from bisc.errors import PacketError

OPUS_RED = "opus-red"
MAX_COPIES = 2
MAX_COPY_BYTES = 1275 * 3  # the largest Opus packet (RFC 6716 section 3.2.1)

# Sender policy: copies while the worst receiver's loss of the last report is at least ON_LOSS; back
# to none only after OFF_AFTER seconds of reports under OFF_LOSS (loss comes in bursts: flapping
# would lose the first frames of every burst).
ON_LOSS = 0.01
OFF_LOSS = 0.005
OFF_AFTER = 10.0


class RedError(PacketError):
    """A RED payload whose framing does not add up."""


def pack(primary: bytes, copies: Sequence[bytes] = ()) -> bytes:
    """The payload for a frame and copies of the frames before it (nearest first)."""
    if not primary:
        raise RedError("the frame's own payload is empty")
    if len(copies) > MAX_COPIES:
        raise RedError(f"at most {MAX_COPIES} copies, got {len(copies)}")
    for copy in copies:
        if not 1 <= len(copy) <= MAX_COPY_BYTES:
            raise RedError(f"a copy must be 1..{MAX_COPY_BYTES} bytes, got {len(copy)}")
    header = struct.pack(f">B{len(copies)}H", len(copies), *(len(c) for c in copies))
    return b"".join((header, *copies, primary))


def unpack(payload: bytes) -> tuple[bytes, tuple[bytes, ...]]:
    """(the frame's own payload, copies of the frames before it, nearest first); RedError if the
    framing is wrong."""
    if not payload:
        raise RedError("empty RED payload")
    count = payload[0]
    if count > MAX_COPIES:
        raise RedError(f"RED payload claims {count} copies (at most {MAX_COPIES})")
    offset = 1 + 2 * count
    if len(payload) < offset:
        raise RedError("RED payload cut short in its header")
    lengths = struct.unpack_from(f">{count}H", payload, 1)
    copies: list[bytes] = []
    for length in lengths:
        if length == 0 or length > MAX_COPY_BYTES:
            raise RedError(f"RED copy of {length} bytes")
        end = offset + length
        if end > len(payload):
            raise RedError("RED payload cut short in a copy")
        copies.append(payload[offset:end])
        offset = end
    if offset >= len(payload):
        raise RedError("RED payload without the frame's own data")
    return payload[offset:], tuple(copies)


@dataclass
class RedundancyPolicy:
    """How many copies the sender adds, from its receivers' loss reports (time passed in)."""

    max_copies: int = 1
    copies: int = 0
    _quiet_since: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.max_copies <= MAX_COPIES:
            raise ValueError(f"max_copies must be 0..{MAX_COPIES}")

    def on_loss(self, loss: float, now: float) -> int:
        """Feed the worst loss (0..1) reported for the last interval; the copies to send from now."""
        if loss >= ON_LOSS:
            self.copies = self.max_copies
            self._quiet_since = None
        elif loss < OFF_LOSS and self.copies:
            if self._quiet_since is None:
                self._quiet_since = now
            elif now - self._quiet_since >= OFF_AFTER:
                self.copies = 0
                self._quiet_since = None
        else:
            self._quiet_since = None
        return self.copies
