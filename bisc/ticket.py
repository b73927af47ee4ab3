"""BiscTicket: what a peer needs to join a channel.

Binary layout (then `bisc1` + base32 for the text form):

    version u8 (=1) | channel secret [32] | bootstrap count u8 (1..8)
    per bootstrap peer:
        EndpointId [32] | address count u8 (0..16)
        per address: family u8 (4 or 6) | ip [4 or 16] | port u16
        relay URL length u16 (0 = none, at most 512) | relay URL utf-8
    checksum [4] = first 4 bytes of SHA-256 over everything before it

The topic id is SHA-256("bisc-channel-v1:" + secret): knowing it does not
reveal the secret, so it is safe to show.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bisc.errors import IdentityError, TicketError
from bisc.identity import EndpointId, b32decode, b32encode

PREFIX = "bisc1"
VERSION = 1
SECRET_SIZE = 32
CHECKSUM_SIZE = 4
MAX_BOOTSTRAP = 8
MAX_ADDRS = 16
MAX_RELAY_URL = 512
MAX_TEXT_LENGTH = 8192
_TOPIC_TAG = b"bisc-channel-v1:"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def topic_id(secret: bytes) -> bytes:
    return hashlib.sha256(_TOPIC_TAG + secret).digest()


@dataclass(frozen=True)
class EndpointAddr:
    """How to reach one peer: its id, direct addresses and optional relay."""

    endpoint_id: EndpointId
    addrs: tuple[tuple[IpAddress, int], ...] = ()
    relay_url: str | None = None

    def __post_init__(self) -> None:
        if len(self.addrs) > MAX_ADDRS:
            raise TicketError(f"at most {MAX_ADDRS} addresses per peer, got {len(self.addrs)}")
        for _, port in self.addrs:
            if not 1 <= port <= 0xFFFF:
                raise TicketError(f"port {port} is not a valid UDP port")
        if self.relay_url is not None and not 0 < len(self.relay_url.encode()) <= MAX_RELAY_URL:
            raise TicketError(f"relay URL must be 1..{MAX_RELAY_URL} bytes")

    @classmethod
    def of(
        cls,
        endpoint_id: EndpointId,
        addrs: Sequence[tuple[str, int]] = (),
        relay_url: str | None = None,
    ) -> EndpointAddr:
        """Build from textual IPs, e.g. EndpointAddr.of(eid, [("127.0.0.1", 4433)])."""
        try:
            parsed = tuple((ipaddress.ip_address(host), int(port)) for host, port in addrs)
        except ValueError as exc:
            raise TicketError(f"invalid address: {exc}") from None
        return cls(endpoint_id, parsed, relay_url)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint_id": str(self.endpoint_id),
            "addrs": [_format_addr(ip, port) for ip, port in self.addrs],
            "relay_url": self.relay_url,
        }


def _format_addr(ip: IpAddress, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


@dataclass(frozen=True)
class BiscTicket:
    secret: bytes = field(repr=False)
    bootstrap: tuple[EndpointAddr, ...]

    def __post_init__(self) -> None:
        if len(self.secret) != SECRET_SIZE:
            raise TicketError(f"channel secret must be {SECRET_SIZE} bytes, got {len(self.secret)}")
        if not 1 <= len(self.bootstrap) <= MAX_BOOTSTRAP:
            raise TicketError(f"a ticket lists 1..{MAX_BOOTSTRAP} bootstrap peers, got {len(self.bootstrap)}")

    @staticmethod
    def new_secret() -> bytes:
        return os.urandom(SECRET_SIZE)

    @property
    def topic_id(self) -> bytes:
        return topic_id(self.secret)

    def to_bytes(self) -> bytes:
        out = bytearray([VERSION])
        out += self.secret
        out.append(len(self.bootstrap))
        for peer in self.bootstrap:
            out += peer.endpoint_id.key
            out.append(len(peer.addrs))
            for ip, port in peer.addrs:
                out.append(ip.version)
                out += ip.packed
                out += struct.pack(">H", port)
            relay = (peer.relay_url or "").encode()
            out += struct.pack(">H", len(relay)) + relay
        out += hashlib.sha256(out).digest()[:CHECKSUM_SIZE]
        return bytes(out)

    def to_text(self) -> str:
        return PREFIX + b32encode(self.to_bytes())

    def __str__(self) -> str:
        return self.to_text()

    @classmethod
    def parse(cls, text: str) -> BiscTicket:
        """Parse the text form; TicketError with one clear line if it is bad."""
        if not isinstance(text, str):
            raise TicketError("a ticket is text")
        text = "".join(text.split())  # tolerate line breaks from copy and paste
        if len(text) > MAX_TEXT_LENGTH:
            raise TicketError(f"ticket is too long ({len(text)} characters)")
        if not text.lower().startswith(PREFIX):
            raise TicketError(f"not a bisc ticket: it must start with {PREFIX!r}")
        try:
            data = b32decode(text[len(PREFIX) :])
        except ValueError as exc:
            raise TicketError(f"ticket is not valid base32: {exc}") from None
        return cls.from_bytes(data)

    @classmethod
    def from_bytes(cls, data: bytes) -> BiscTicket:
        reader = _Reader(data)
        version = reader.u8("version")
        if version != VERSION:
            raise TicketError(f"unsupported ticket version {version} (this bisc reads {VERSION})")
        secret = reader.take(SECRET_SIZE, "channel secret")
        n_peers = reader.u8("bootstrap count")
        if not 1 <= n_peers <= MAX_BOOTSTRAP:
            raise TicketError(f"ticket lists {n_peers} bootstrap peers, expected 1..{MAX_BOOTSTRAP}")
        peers = [reader.endpoint_addr() for _ in range(n_peers)]
        body_end = reader.pos
        checksum = reader.take(CHECKSUM_SIZE, "checksum")
        if reader.pos != len(data):
            raise TicketError(f"ticket has {len(data) - reader.pos} unexpected trailing bytes")
        if hashlib.sha256(data[:body_end]).digest()[:CHECKSUM_SIZE] != checksum:
            raise TicketError("ticket checksum does not match: it was mistyped or altered")
        return cls(secret, tuple(peers))

    def describe(self) -> dict[str, Any]:
        """What `bisc ticket decode` shows: everything but the secret."""
        return {
            "version": VERSION,
            "topic_id": self.topic_id.hex(),
            "bootstrap": [peer.to_json() for peer in self.bootstrap],
        }


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise TicketError(
                f"ticket is truncated: {what} needs {n} bytes at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        value: int = struct.unpack(">H", self.take(2, what))[0]
        return value

    def endpoint_addr(self) -> EndpointAddr:
        try:
            endpoint_id = EndpointId(self.take(32, "EndpointId"))
        except IdentityError as exc:  # pragma: no cover - length is fixed above
            raise TicketError(str(exc)) from None
        n_addrs = self.u8("address count")
        if n_addrs > MAX_ADDRS:
            raise TicketError(f"ticket lists {n_addrs} addresses for one peer, at most {MAX_ADDRS}")
        addrs: list[tuple[IpAddress, int]] = []
        for _ in range(n_addrs):
            family = self.u8("address family")
            if family == 4:
                ip: IpAddress = ipaddress.IPv4Address(self.take(4, "IPv4 address"))
            elif family == 6:
                ip = ipaddress.IPv6Address(self.take(16, "IPv6 address"))
            else:
                raise TicketError(f"unknown address family {family} in ticket")
            port = self.u16("port")
            if port == 0:
                raise TicketError("ticket holds an address with port 0")
            addrs.append((ip, port))
        relay_len = self.u16("relay URL length")
        if relay_len > MAX_RELAY_URL:
            raise TicketError(f"relay URL of {relay_len} bytes is longer than {MAX_RELAY_URL}")
        relay = None
        if relay_len:
            try:
                relay = self.take(relay_len, "relay URL").decode("utf-8")
            except UnicodeDecodeError:
                raise TicketError("relay URL in ticket is not valid UTF-8") from None
        return EndpointAddr(endpoint_id, tuple(addrs), relay)
