"""The node's Ed25519 identity; its public key is the EndpointId.

The key is created on first run and stored as PKCS#8 PEM, readable only by
its owner (0600 where the platform has POSIX permissions).
"""

from __future__ import annotations

import base64
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from bisc.errors import IdentityError

log = logging.getLogger(__name__)

ENDPOINT_ID_SIZE = 32
_B32_LEN = 52  # 32 bytes in unpadded base32


def b32encode(data: bytes) -> str:
    """Lowercase base32 without padding."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def b32decode(text: str) -> bytes:
    """Inverse of b32encode; accepts either case. Raises ValueError."""
    cleaned = text.strip().upper()
    if len(cleaned) % 8 in (1, 3, 6):
        raise ValueError(f"{len(cleaned)} characters is not a valid base32 length")
    for position, char in enumerate(cleaned):
        if not ("A" <= char <= "Z" or "2" <= char <= "7"):
            raise ValueError(f"character {char!r} at position {position} is not base32 (a-z, 2-7)")
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


@dataclass(frozen=True, order=True)
class EndpointId:
    """A node's public key, the name peers dial and verify."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != ENDPOINT_ID_SIZE:
            raise IdentityError(f"an EndpointId is {ENDPOINT_ID_SIZE} bytes, got {len(self.key)}")

    def __str__(self) -> str:
        return b32encode(self.key)

    def short(self) -> str:
        return str(self)[:10]

    @classmethod
    def parse(cls, text: str) -> EndpointId:
        try:
            key = b32decode(text)
        except ValueError as exc:
            raise IdentityError(f"invalid EndpointId: {exc}") from None
        if len(key) != ENDPOINT_ID_SIZE:
            raise IdentityError(f"invalid EndpointId: {len(key)} bytes, expected {ENDPOINT_ID_SIZE}")
        return cls(key)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class Identity:
    """A private key and the EndpointId it gives."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.private_key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.endpoint_id = EndpointId(raw)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, data: bytes, source: str = "identity key") -> Identity:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise IdentityError(f"{source} is not a valid PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{source} holds a {type(key).__name__}, expected Ed25519")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> Identity:
        """Load the key at `path`, creating it (0600) on first run."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            identity = cls.generate()
            identity._write_new(path)
            log.info("created identity %s at %s", identity.endpoint_id, path)
            return identity
        except OSError as exc:
            raise IdentityError(f"cannot read identity key {path}: {exc.strerror}") from None
        _tighten_permissions(path)
        return cls.from_pem(data, source=str(path))

    def _write_new(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        # Created 0600 from the start, so the key is never readable by others.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
        try:
            os.write(fd, self.to_pem())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)


def _tighten_permissions(path: Path) -> None:
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("identity key %s was readable by others (%o); setting 0600", path, mode)
        os.chmod(path, 0o600)
