"""The one family of errors bisc raises for bad input.

Every implementation of a hot path (pure Python, Cython, Rust) raises these
same types, so callers catch one thing whichever implementation is loaded.
"""

from __future__ import annotations


class BiscError(Exception):
    """Base class of every error bisc raises on purpose."""


class PacketError(BiscError, ValueError):
    """A media packet that cannot be encoded or decoded."""


class FrameTooLargeError(PacketError):
    """A frame that cannot be fragmented within the configured limits."""


class ChunkHashError(BiscError):
    """A file could not be hashed as requested (e.g. it changed size)."""


class TicketError(BiscError, ValueError):
    """A ticket that cannot be parsed."""


class IdentityError(BiscError):
    """The identity key is missing, unreadable or malformed."""


class SettingsError(BiscError):
    """The settings file cannot be read or holds invalid values."""
