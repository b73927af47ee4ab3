"""Tickets: round trips, the CLI, and clear errors for every kind of garbage."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bisc.errors import TicketError
from bisc.identity import Identity, b32encode
from bisc.ticket import BiscTicket, EndpointAddr, topic_id
from tests.helpers import run_bisc


def make_ticket(peers: int = 1) -> BiscTicket:
    bootstrap = tuple(
        EndpointAddr.of(
            Identity.generate().endpoint_id,
            [("127.0.0.1", 4433 + i), ("::1", 5000)],
            relay_url="https://relay.example/" if i == 0 else None,
        )
        for i in range(peers)
    )
    return BiscTicket(BiscTicket.new_secret(), bootstrap)


def test_roundtrip_and_topic() -> None:
    ticket = make_ticket(peers=3)
    text = ticket.to_text()
    assert text.startswith("bisc1") and text == text.lower()
    parsed = BiscTicket.parse(text)
    assert parsed == ticket
    assert parsed.topic_id == topic_id(ticket.secret) != ticket.secret
    # Upper case (QR alphanumeric mode) and pasted line breaks are accepted.
    assert BiscTicket.parse(text.upper()) == ticket
    assert BiscTicket.parse(text[:40] + "\n  " + text[40:]) == ticket


def test_describe_never_shows_secret() -> None:
    ticket = make_ticket()
    shown = json.dumps(ticket.describe())
    assert ticket.secret.hex() not in shown
    assert b32encode(ticket.secret) not in shown
    assert ticket.secret.hex() not in repr(ticket) and str(ticket.secret) not in repr(ticket)


def _body(ticket: BiscTicket) -> bytes:
    return ticket.to_bytes()


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: "hello", "must start with 'bisc1'"),
        (lambda t: "", "must start with 'bisc1'"),
        (lambda t: t.to_text() + "!", "not valid base32"),
        (lambda t: t.to_text()[:-1] + "1", "not valid base32"),
        (lambda t: "bisc1" + b32encode(_body(t)[:20]), "truncated"),
        (lambda t: "bisc1" + b32encode(_body(t)[:-2]), "truncated"),
        (lambda t: "bisc1" + b32encode(_body(t) + b"\0\0"), "trailing"),
        (lambda t: "bisc1" + b32encode(b"\x02" + _body(t)[1:]), "version 2"),
        (lambda t: "bisc1" + b32encode(_body(t)[:33] + b"\0" + _body(t)[34:]), "0 bootstrap"),
        (lambda t: "bisc1" + b32encode(_body(t)[:-1] + bytes([_body(t)[-1] ^ 1])), "checksum"),
        (lambda t: "bisc1" + "a" * 9000, "too long"),
    ],
)
def test_garbage_is_rejected_clearly(mangle, message: str) -> None:
    with pytest.raises(TicketError, match=message):
        BiscTicket.parse(mangle(make_ticket()))


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(TicketError):
        BiscTicket.from_bytes(data)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_random_text_never_crash(text: str) -> None:
    with contextlib.suppress(TicketError):
        BiscTicket.parse("bisc1" + text)


def test_bad_fields_rejected_when_building() -> None:
    eid = Identity.generate().endpoint_id
    with pytest.raises(TicketError):
        EndpointAddr.of(eid, [("not an ip", 1)])
    with pytest.raises(TicketError):
        EndpointAddr.of(eid, [("10.0.0.1", 0)])
    with pytest.raises(TicketError):
        BiscTicket(b"short", (EndpointAddr(eid),))
    with pytest.raises(TicketError):
        BiscTicket(BiscTicket.new_secret(), ())


def test_cli_decode() -> None:
    ticket = make_ticket(peers=2)
    result = run_bisc("ticket", "decode", ticket.to_text(), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["topic_id"] == ticket.topic_id.hex()
    assert [p["endpoint_id"] for p in info["bootstrap"]] == [str(p.endpoint_id) for p in ticket.bootstrap]
    assert info["bootstrap"][0]["addrs"] == ["127.0.0.1:4433", "[::1]:5000"]
    assert ticket.secret.hex() not in result.stdout
    text = run_bisc("ticket", "decode", ticket.to_text())
    assert text.returncode == 0 and ticket.topic_id.hex() in text.stdout


@pytest.mark.parametrize("garbage", ["bisc1", "nonsense", "bisc1zzzzzzzz", "bisc1" + "a" * 80])
def test_cli_rejects_garbage_with_one_line(garbage: str) -> None:
    result = run_bisc("ticket", "decode", garbage)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bisc: invalid ticket:"), result.stderr
