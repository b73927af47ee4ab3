"""Link conditions and the fault vocabulary of the simulated network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_RETRY_INTERVAL = 1.0  # cap of the retransmission back-off while a path is down
RTO_FLOOR = 0.05

JitterModel = Literal["uniform", "gaussian"]

# Reasons a connection closes with when the simulation (not the application) ends it.
REASON_LOST = "lost"
REASON_CRASHED = "crashed"
REASON_ENDPOINT_CLOSED = "endpoint closed"
REASON_CONTROL_OVERFLOW = "control queue overflow"


@dataclass(frozen=True)
class LinkConditions:
    """How one path behaves; one-way latency and jitter in seconds."""

    latency: float = 0.01
    jitter: float = 0.0
    loss: float = 0.0
    reorder: float = 0.0

    def __post_init__(self) -> None:
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter must not be negative")
        for name in ("loss", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")

    @property
    def rto(self) -> float:
        """Retransmission timeout: how much later a lost reliable segment arrives."""
        return 3 * self.latency + RTO_FLOOR
