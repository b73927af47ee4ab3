"""An in-memory simulated network implementing the Transport interface.

`SimNetwork` is the shared medium; `await network.endpoint(identity)` gives a
`SimEndpoint` with a fake address (10.x.y.z:4433, only a key in the
network's table: nothing here touches a socket). Everything runs on the real
asyncio event loop, so the same application code runs on this transport as on
the aioquic one; delays are timers on that loop.

What is modelled
- Datagrams: each is delayed by latency + jitter (uniform or gaussian), may be
  lost, and with probability `reorder` gets an extra delay; reordering follows
  from the differing delays. At most MAX_IN_FLIGHT_DATAGRAMS are in flight per
  connection; more are refused (False, counted) to keep memory bounded.
- Control frames and streams: reliable and ordered, like QUIC streams. A lost
  segment arrives one retransmission timeout (3 x latency + 50 ms) later and
  holds back everything sent after it. While the path is down (partition,
  crashed peer) segments wait and are retried with back-off.
- Partitions and crashes: connections over a path that stays down for
  `idle_timeout` seconds close on both sides with reason "lost"; a path that
  comes back sooner keeps its connections (QUIC keep-alives would).
- A graceful close reaches the peer one latency later, after anything sent
  before it.

All randomness (loss, jitter, connection bindings) comes from one
`random.Random(seed)`. Events due at the same moment run in the order they
were scheduled, and the delays of everything sent within one event-loop
iteration are measured from the same instant, so a seeded run delivers the
same sequence as long as the application sends the same things in the same
loop iterations.

Modules: `network` (SimNetwork, the shared medium, its faults and stats),
`endpoint` (SimEndpoint: dialing and accepting), `connection`
(SimConnection), `stream` (SimStream), `link` (a path's reliable, ordered
segment delivery and idle timeout), `segments` (what that delivery carries),
`conditions` (LinkConditions and close reasons) and `scheduler`
(deterministic timers).
"""

from bisc.net.sim.conditions import (
    MAX_RETRY_INTERVAL,
    REASON_CONTROL_OVERFLOW,
    REASON_CRASHED,
    REASON_ENDPOINT_CLOSED,
    REASON_LOST,
    RTO_FLOOR,
    JitterModel,
    LinkConditions,
)
from bisc.net.sim.connection import MAX_IN_FLIGHT_DATAGRAMS, SimConnection
from bisc.net.sim.endpoint import SimEndpoint
from bisc.net.sim.network import SIM_PORT, SimNetwork, SimStats
from bisc.net.sim.stream import STREAM_HIGH_WATER, STREAM_SEGMENT, STREAM_WINDOW, SimStream

__all__ = [
    "MAX_IN_FLIGHT_DATAGRAMS",
    "MAX_RETRY_INTERVAL",
    "REASON_CONTROL_OVERFLOW",
    "REASON_CRASHED",
    "REASON_ENDPOINT_CLOSED",
    "REASON_LOST",
    "RTO_FLOOR",
    "SIM_PORT",
    "STREAM_HIGH_WATER",
    "STREAM_SEGMENT",
    "STREAM_WINDOW",
    "JitterModel",
    "LinkConditions",
    "SimConnection",
    "SimEndpoint",
    "SimNetwork",
    "SimStats",
    "SimStream",
]
