"""bisc: peer-to-peer voice, video, screen and file sharing for small groups."""

from __future__ import annotations

from bisc.errors import BiscError, PacketError, TicketError
from bisc.identity import EndpointId, Identity
from bisc.ticket import BiscTicket, EndpointAddr

__version__ = "0.1.0"

__all__ = [
    "BiscError",
    "BiscTicket",
    "EndpointAddr",
    "EndpointId",
    "Identity",
    "PacketError",
    "TicketError",
    "__version__",
]
