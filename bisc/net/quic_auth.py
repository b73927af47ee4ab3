"""The dialer's proof of identity on the control stream (sans-IO).

TLS authenticates the server (its certificate key is the EndpointId that was
dialed) but aioquic does not verify client certificates, so the client proves
its key here, before anything else happens on the connection:

    client -> HELLO     0x01 | client EndpointId [32] | client nonce [32]
    server -> CHALLENGE 0x02 | server nonce [32] | server EndpointId [32]
    client -> PROOF     0x03 | Ed25519 signature [64] over
                        "bisc-auth-v1" | server id | client id | client nonce | server nonce
    server -> OK        0x04

Each message is one length-prefixed control frame (transport.frame). The
server nonce is fresh per connection, so a PROOF captured from one connection
is useless on another. Both ends then derive the same `binding`
SHA-256("bisc-binding-v1" | server id | client id | client nonce | server nonce).

Nonces are passed in; nothing here reads a clock or a random source.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum

from bisc.identity import ENDPOINT_ID_SIZE, EndpointId, Identity
from bisc.net.transport import AuthenticationError

NONCE_SIZE = 32
SIGNATURE_SIZE = 64
MAX_HANDSHAKE_FRAME = 1 + ENDPOINT_ID_SIZE + NONCE_SIZE  # the largest message
_AUTH_TAG = b"bisc-auth-v1"
_BINDING_TAG = b"bisc-binding-v1"


class MessageType(IntEnum):
    HELLO = 1
    CHALLENGE = 2
    PROOF = 3
    OK = 4


_SIZES = {
    MessageType.HELLO: 1 + ENDPOINT_ID_SIZE + NONCE_SIZE,
    MessageType.CHALLENGE: 1 + NONCE_SIZE + ENDPOINT_ID_SIZE,
    MessageType.PROOF: 1 + SIGNATURE_SIZE,
    MessageType.OK: 1,
}


def _expect(frame: bytes, kind: MessageType) -> bytes:
    """The body of `frame` if it is a well-formed `kind` message."""
    if not frame or frame[0] != kind or len(frame) != _SIZES[kind]:
        got = f"type {frame[0]}, {len(frame)} bytes" if frame else "an empty frame"
        raise AuthenticationError(f"malformed handshake: expected {kind.name}, got {got}")
    return frame[1:]


def proof_message(
    server_id: EndpointId, client_id: EndpointId, client_nonce: bytes, server_nonce: bytes
) -> bytes:
    return _AUTH_TAG + server_id.key + client_id.key + client_nonce + server_nonce


def binding(server_id: EndpointId, client_id: EndpointId, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return hashlib.sha256(_BINDING_TAG + server_id.key + client_id.key + client_nonce + server_nonce).digest()


def _check_nonce(nonce: bytes) -> None:
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"a handshake nonce is {NONCE_SIZE} bytes")


class ClientHandshake:
    """The dialer's side: hello(), then on_frame(CHALLENGE) -> PROOF, on_frame(OK)."""

    def __init__(self, identity: Identity, server_id: EndpointId, client_nonce: bytes) -> None:
        _check_nonce(client_nonce)
        self.identity = identity
        self.server_id = server_id
        self.client_nonce = client_nonce
        self.server_nonce: bytes | None = None
        self.binding: bytes | None = None  # set once OK arrived

    @property
    def done(self) -> bool:
        return self.binding is not None

    def hello(self) -> bytes:
        return bytes([MessageType.HELLO]) + self.identity.endpoint_id.key + self.client_nonce

    def on_frame(self, frame: bytes) -> bytes | None:
        """The reply to send (PROOF), or None; AuthenticationError if the server misbehaves."""
        if self.done:
            raise AuthenticationError("handshake frame after the handshake finished")
        if self.server_nonce is None:
            body = _expect(frame, MessageType.CHALLENGE)
            server_nonce, server_key = body[:NONCE_SIZE], body[NONCE_SIZE:]
            # The server must name the id we dialed: otherwise a peer we dialed
            # could relay another server's challenge and have us sign for it.
            if server_key != self.server_id.key:
                raise AuthenticationError(f"server claims to be {EndpointId(server_key)} in its challenge")
            self.server_nonce = server_nonce
            message = proof_message(
                self.server_id, self.identity.endpoint_id, self.client_nonce, server_nonce
            )
            return bytes([MessageType.PROOF]) + self.identity.sign(message)
        _expect(frame, MessageType.OK)
        self.binding = binding(
            self.server_id, self.identity.endpoint_id, self.client_nonce, self.server_nonce
        )
        return None


class ServerHandshake:
    """The acceptor's side: on_frame(HELLO) -> CHALLENGE, on_frame(PROOF) -> OK."""

    def __init__(self, identity: Identity, server_nonce: bytes) -> None:
        _check_nonce(server_nonce)
        self.identity = identity
        self.server_nonce = server_nonce
        self.client_id: EndpointId | None = None
        self.client_nonce: bytes | None = None
        self.binding: bytes | None = None  # set once the proof verified

    @property
    def done(self) -> bool:
        return self.binding is not None

    def on_frame(self, frame: bytes) -> bytes:
        """The reply to send; AuthenticationError if the client fails to prove its key."""
        if self.done:
            raise AuthenticationError("handshake frame after the handshake finished")
        if self.client_id is None or self.client_nonce is None:
            body = _expect(frame, MessageType.HELLO)
            self.client_id = EndpointId(body[:ENDPOINT_ID_SIZE])
            self.client_nonce = body[ENDPOINT_ID_SIZE:]
            return bytes([MessageType.CHALLENGE]) + self.server_nonce + self.identity.endpoint_id.key
        signature = _expect(frame, MessageType.PROOF)
        server_id = self.identity.endpoint_id
        message = proof_message(server_id, self.client_id, self.client_nonce, self.server_nonce)
        if not self.client_id.verify(signature, message):
            raise AuthenticationError(f"bad handshake signature from {self.client_id.short()}")
        self.binding = binding(server_id, self.client_id, self.client_nonce, self.server_nonce)
        return bytes([MessageType.OK])
