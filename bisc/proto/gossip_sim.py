"""A deterministic simulator for the gossip state machine: N nodes, a virtual clock, a seeded network.

Network model. Gossip frames ride reliable, ordered QUIC streams, so the
simulator never drops a frame between two live nodes. Loss is modelled as
what QUIC makes of it: with probability `loss` a frame needs a retransmission
and arrives one retransmission timeout later (repeatedly, with doubling, as
long as the dice say lost). Frames on one directed link stay in order, so a
delayed frame also holds back the frames behind it (head-of-line blocking).
Each pair of nodes has a fixed one-way latency drawn from
[latency_min, latency_max], plus per-frame jitter; the first frame on a new
connection also pays a handshake round trip.

Failures. A crashed node sends and receives nothing more; frames it had in
flight are lost (unacknowledged data dies with the process). Each live node
with a connection to it is told (handle_disconnected) after a detection delay
drawn from [detect_delay_min, detect_delay_max], as a QUIC idle timeout would;
so is any node that later tries to send to it.

run_scenario() builds the standard experiment on top: nodes join one after
another, the overlay settles, then broadcasts from random live nodes while a
`churn` fraction of the nodes crash and are replaced by newcomers.
"""

from __future__ import annotations

import functools
import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bisc.proto.gossip import (
    Deliver,
    Disconnect,
    Gossip,
    GossipConfig,
    MessageId,
    PeerId,
    Send,
)
from bisc.proto.gossip_wire import (
    MESSAGE_ID_SIZE,
    TAG_EAGER_PUSH,
    TAG_GRAFT,
    TAG_IHAVE,
    GossipError,
    Graft,
    IHave,
    decode,
    message_id,
)

# Event kinds. An event is (time, seq, kind, peer_a, peer_b, frame, action); seq is unique, so
# tuples never compare past it, and equal times run in scheduling order.
_FRAME, _TIMER, _LINK_FAILED, _ACTION = 0, 1, 2, 3
_Event = tuple[float, int, int, PeerId, PeerId, bytes, Callable[[], None] | None]
_MAX_TIMER_FIRINGS_AT_ONE_INSTANT = 10_000


@dataclass(frozen=True)
class NetworkConfig:
    latency_min: float = 0.010  # one-way, per pair of nodes
    latency_max: float = 0.050
    jitter: float = 0.005  # extra per frame, uniform in [0, jitter]
    loss: float = 0.0  # probability a frame needs a retransmission (which QUIC then does)
    retransmit_timeout: float = 0.2  # extra delay of one retransmission, doubling on repeats
    detect_delay_min: float = 1.0  # how long until a node notices a dead peer's link
    detect_delay_max: float = 3.0


@dataclass
class _SimNode:
    peer: PeerId
    gossip: Gossip
    joined_at: float
    crashed_at: float | None = None  # when it crashed or left
    left_gracefully: bool = False  # then its frames in flight still arrive
    timer_at: float | None = None
    connections: dict[PeerId, None] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.crashed_at is None


@dataclass
class MessageTraffic:
    """What the network carried about one message id, counted at the receivers."""

    payload_copies: int = 0  # EagerPush frames (eager pushes and Graft answers)
    ihave_entries: int = 0
    graft_requests: int = 0


class GossipSim:
    """N gossip nodes on a simulated network, driven by one seeded event queue."""

    def __init__(self, network: NetworkConfig, gossip: GossipConfig, seed: int) -> None:
        self.network = network
        self.gossip_config = gossip
        self.now = 0.0
        self._seeds = random.Random(seed)  # hands out per-node seeds, in creation order
        self._net_rng = random.Random(self._seeds.getrandbits(64))
        self._events: list[_Event] = []
        self._seq = 0
        self.nodes: dict[PeerId, _SimNode] = {}
        self._latency: dict[tuple[PeerId, PeerId], float] = {}
        self._link_free_at: dict[tuple[PeerId, PeerId], float] = {}
        self._failure_pending: dict[tuple[PeerId, PeerId], None] = {}
        # Results, keyed by message id.
        self.deliveries: dict[MessageId, dict[PeerId, tuple[float, int]]] = {}
        self.traffic: dict[MessageId, MessageTraffic] = {}
        self.duplicate_deliveries = 0
        self.frames_delivered = 0
        self.events_processed = 0

    # --- scripting the run -------------------------------------------------------------------------

    def spawn(self, peer: PeerId, bootstrap: Sequence[PeerId], at: float, peer_data: bytes = b"") -> None:
        """A new node `peer` starts at `at` and joins through `bootstrap`."""
        self.at(at, lambda: self.add_node(peer, list(bootstrap), peer_data))

    def crash(self, peer: PeerId, at: float) -> None:
        self.at(at, lambda: self.crash_node(peer))

    def leave(self, peer: PeerId, at: float) -> None:
        self.at(at, lambda: self.leave_node(peer))

    def broadcast(
        self, peer: PeerId, payload: bytes, at: float, on_sent: Callable[[MessageId], None] | None = None
    ) -> None:
        """`peer` broadcasts `payload` at `at`; `on_sent` gets the message id."""

        def broadcast_now() -> None:
            node = self.nodes[peer]
            msg_id = node.gossip.broadcast(payload, self.now)
            self.deliveries.setdefault(msg_id, {})
            if on_sent is not None:
                on_sent(msg_id)
            self._process_outputs(node)

        self.at(at, broadcast_now)

    def at(self, time: float, action: Callable[[], None]) -> None:
        """Run `action` at virtual time `time`."""
        self._push(time, _ACTION, b"", b"", b"", action)

    def run_until(self, end: float) -> None:
        events = self._events
        firings_now, last_time = 0, -1.0
        while events and events[0][0] <= end:
            time, _, kind, a, b, frame, action = heapq.heappop(events)
            self.now = time
            self.events_processed += 1
            if kind == _FRAME:
                self._deliver_frame(a, b, frame)
            elif kind == _TIMER:
                firings_now = firings_now + 1 if time == last_time else 0
                last_time = time
                if firings_now > _MAX_TIMER_FIRINGS_AT_ONE_INSTANT:
                    raise RuntimeError("a gossip timer keeps firing without time passing")
                self._fire_timer(a, time)
            elif kind == _LINK_FAILED:
                self._link_failed(a, b)
            elif action is not None:
                action()
        self.now = max(self.now, end)

    # --- queries -----------------------------------------------------------------------------------

    def live_peers(self) -> list[PeerId]:
        return [peer for peer, node in self.nodes.items() if node.alive]

    def gossip(self, peer: PeerId) -> Gossip:
        return self.nodes[peer].gossip

    def asymmetric_links(self) -> int:
        """Active-view entries between live nodes that the other end does not have."""
        count = 0
        for peer, node in self.nodes.items():
            if not node.alive:
                continue
            for other in node.gossip.active_view:
                other_node = self.nodes.get(other)
                if other_node is not None and other_node.alive and peer not in other_node.gossip.active_view:
                    count += 1
        return count

    # --- internals ---------------------------------------------------------------------------------

    def _push(
        self,
        time: float,
        kind: int,
        a: PeerId,
        b: PeerId,
        frame: bytes,
        action: Callable[[], None] | None = None,
    ) -> None:
        self._seq += 1
        heapq.heappush(self._events, (time, self._seq, kind, a, b, frame, action))

    def add_node(self, peer: PeerId, bootstrap: Sequence[PeerId], peer_data: bytes = b"") -> None:
        """Start a node now and let it join through `bootstrap`."""
        if peer in self.nodes:
            raise ValueError(f"peer {peer!r} already exists")
        rng = random.Random(self._seeds.getrandbits(64))
        node = _SimNode(peer, Gossip(peer, self.gossip_config, rng, peer_data), joined_at=self.now)
        self.nodes[peer] = node
        node.gossip.join(bootstrap, self.now)
        self._process_outputs(node)

    def leave_node(self, peer: PeerId) -> None:
        """A graceful exit now: the node's DisconnectNotices go out and arrive, its links close
        cleanly (nobody is told of a failure), and it stops."""
        node = self.nodes[peer]
        if not node.alive:
            return
        node.gossip.leave(self.now)
        self._process_outputs(node)
        node.crashed_at = self.now
        node.left_gracefully = True
        for other in node.connections:
            self.nodes[other].connections.pop(peer, None)
        node.connections.clear()

    def crash_node(self, peer: PeerId) -> None:
        """Stop a node now, without a word to its neighbours."""
        node = self.nodes[peer]
        if not node.alive:
            return
        node.crashed_at = self.now
        for other in node.connections:
            other_node = self.nodes[other]
            other_node.connections.pop(peer, None)
            if other_node.alive:
                self._schedule_failure_notice(other, peer)
        node.connections.clear()

    def _send(self, src: _SimNode, dst_peer: PeerId, frame: bytes) -> None:
        dst = self.nodes.get(dst_peer)
        if dst is None or not dst.alive:
            self._schedule_failure_notice(src.peer, dst_peer)  # the dial or the stream times out
            return
        net, rng = self.network, self._net_rng
        latency = self._pair_latency(src.peer, dst_peer)
        delay = latency + rng.uniform(0.0, net.jitter)
        if dst_peer not in src.connections:
            src.connections[dst_peer] = None
            dst.connections[src.peer] = None
            delay += 2 * latency  # QUIC handshake before the first frame
        timeout = net.retransmit_timeout
        while rng.random() < net.loss:
            delay += timeout
            timeout *= 2
        link = (src.peer, dst_peer)
        arrival = max(self.now + delay, self._link_free_at.get(link, 0.0))  # in order on the stream
        self._link_free_at[link] = arrival
        self._push(arrival, _FRAME, src.peer, dst_peer, frame)

    def _pair_latency(self, a: PeerId, b: PeerId) -> float:
        key = (a, b) if a <= b else (b, a)
        latency = self._latency.get(key)
        if latency is None:
            net = self.network
            latency = self._latency[key] = self._net_rng.uniform(net.latency_min, net.latency_max)
        return latency

    def _deliver_frame(self, src_peer: PeerId, dst_peer: PeerId, frame: bytes) -> None:
        src, dst = self.nodes[src_peer], self.nodes[dst_peer]
        if not src.alive and not src.left_gracefully:
            return  # unacknowledged data died with its sender
        if not dst.alive:
            self._schedule_failure_notice(src_peer, dst_peer)
            return
        self.frames_delivered += 1
        self._count_traffic(frame)
        dst.gossip.handle_message(src_peer, frame, self.now)
        self._process_outputs(dst)

    def _count_traffic(self, frame: bytes) -> None:
        # A msgpack fixarray header, then the type tag as a positive fixint.
        if len(frame) < 2 or not 0x90 <= frame[0] <= 0x9F:
            return
        tag = frame[1]
        if tag == TAG_EAGER_PUSH:
            msg_id = frame[4 : 4 + MESSAGE_ID_SIZE]  # after the bin8 header of the id
            traffic = self.traffic.get(msg_id)
            if traffic is not None:
                traffic.payload_copies += 1
        elif tag in (TAG_IHAVE, TAG_GRAFT):
            try:
                message = decode(frame)
            except GossipError:
                return
            if isinstance(message, IHave):
                for msg_id, _ in message.entries:
                    if (traffic := self.traffic.get(msg_id)) is not None:
                        traffic.ihave_entries += 1
            elif isinstance(message, Graft):
                for msg_id in message.msg_ids:
                    if (traffic := self.traffic.get(msg_id)) is not None:
                        traffic.graft_requests += 1

    def _schedule_failure_notice(self, observer: PeerId, dead: PeerId) -> None:
        key = (observer, dead)
        if key in self._failure_pending:
            return
        self._failure_pending[key] = None
        net = self.network
        delay = self._net_rng.uniform(net.detect_delay_min, net.detect_delay_max)
        self._push(self.now + delay, _LINK_FAILED, observer, dead, b"")

    def _link_failed(self, observer_peer: PeerId, dead_peer: PeerId) -> None:
        self._failure_pending.pop((observer_peer, dead_peer), None)
        observer = self.nodes[observer_peer]
        dead = self.nodes.get(dead_peer)
        if not observer.alive or (dead is not None and dead.alive):
            return
        observer.connections.pop(dead_peer, None)
        observer.gossip.handle_disconnected(dead_peer, self.now)
        self._process_outputs(observer)

    def _fire_timer(self, peer: PeerId, time: float) -> None:
        node = self.nodes[peer]
        if not node.alive or node.timer_at != time:
            return  # crashed, or superseded by a re-armed timer
        node.timer_at = None
        node.gossip.handle_timeout(time)
        self._process_outputs(node)

    def _process_outputs(self, node: _SimNode) -> None:
        for output in node.gossip.drain():
            if isinstance(output, Send):
                self._send(node, output.peer, output.data)
            elif isinstance(output, Deliver):
                received = self.deliveries.setdefault(output.msg_id, {})
                if node.peer in received:
                    self.duplicate_deliveries += 1
                else:
                    received[node.peer] = (self.now, output.hops)
            elif isinstance(output, Disconnect):
                node.connections.pop(output.peer, None)
                other = self.nodes.get(output.peer)
                if other is not None:
                    other.connections.pop(node.peer, None)
        if not node.alive:
            return
        deadline = node.gossip.poll_timeout()
        if deadline is not None:
            deadline = max(deadline, self.now)
            if deadline != node.timer_at:
                node.timer_at = deadline
                self._push(deadline, _TIMER, node.peer, b"", b"")


# --- the standard experiment -------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioConfig:
    nodes: int = 200
    seed: int = 1
    broadcasts: int = 20
    churn: float = 0.2  # this fraction of the nodes crash during the broadcasts, each replaced by a newcomer
    network: NetworkConfig = field(default_factory=lambda: NetworkConfig(loss=0.1))
    gossip: GossipConfig = field(default_factory=GossipConfig)
    bootstrap_peers: int = 3  # a newcomer joins through this many random live nodes
    join_spacing: float = 0.02  # the initial nodes join one after another, this far apart
    warmup: float = 10.0  # after the last initial join, before the first broadcast
    broadcast_interval: float = 0.5
    window: float = 5.0  # a broadcast must reach every eligible node within this long
    settle_time: float = 3.0  # a node is eligible for broadcasts sent this long after it joined
    payload_size: int = 256


@dataclass(frozen=True)
class BroadcastReport:
    index: int
    sent_at: float
    eligible: int  # nodes live and settled for the whole window, origin excluded
    delivered: int  # of those, how many delivered it within the window
    deliveries: int  # every node that delivered it, eligible or not (newcomers too)
    max_hops: int
    mean_hops: float
    payload_copies: int
    ihave_entries: int
    graft_requests: int
    latency_p50_ms: float
    latency_p99_ms: float

    @property
    def delivery_ratio(self) -> float:
        return self.delivered / self.eligible if self.eligible else 1.0

    @property
    def redundancy(self) -> float:
        """Frames about this message (payload copies, IHave entries, Graft requests) per delivery."""
        frames = self.payload_copies + self.ihave_entries + self.graft_requests
        return frames / self.deliveries if self.deliveries else 0.0

    @property
    def payload_redundancy(self) -> float:
        """Payload copies received per delivery; 1.0 is a perfect tree."""
        return self.payload_copies / self.deliveries if self.deliveries else 0.0


@dataclass(frozen=True)
class SimReport:
    """Totals over all broadcasts. Redundancy is per delivery (every node that delivered, not only
    eligible ones): `payload_redundancy` counts payload copies received (1.0 is a perfect tree),
    `redundancy` adds the IHave entries and Graft requests about the message (the lazy overhead)."""

    nodes: int
    seed: int
    broadcasts: tuple[BroadcastReport, ...]
    delivery_ratio: float
    mean_hops: float
    max_hops: int
    redundancy: float
    payload_redundancy: float
    latency_p50_ms: float
    latency_p99_ms: float
    crashed: int
    newcomers: int
    duplicate_deliveries: int
    asymmetric_links: int
    isolated_nodes: int
    mean_active_view: float
    frames_delivered: int
    events_processed: int


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _peer_name(index: int) -> PeerId:
    return b"node-%06d" % index


class Scenario:
    """The standard experiment: join one by one, settle, then broadcast from random settled nodes while
    `churn` of the nodes crash (never an origin inside its window) and newcomers replace them."""

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        self.sim = GossipSim(config.network, config.gossip, config.seed)
        self._plan = random.Random(config.seed ^ 0x5EED)  # who joins through whom, who crashes, who sends
        self._next_index = 0
        self._sent: list[tuple[int, float, PeerId, MessageId]] = []
        self._protected_until: dict[PeerId, float] = {}  # an origin stays up for its broadcast's window
        self.crashed = 0
        self.first_broadcast_at = config.nodes * config.join_spacing + config.warmup
        interval = config.broadcast_interval
        self.last_broadcast_at = self.first_broadcast_at + max(0, config.broadcasts - 1) * interval
        self.end_at = self.last_broadcast_at + config.window

    def run(self) -> SimReport:
        config, sim, plan = self.config, self.sim, self._plan
        for i in range(config.nodes):
            sim.at(i * config.join_spacing, functools.partial(self._spawn_through_live, self._new_peer()))
        for index in range(config.broadcasts):
            at = self.first_broadcast_at + index * config.broadcast_interval
            sim.at(at, functools.partial(self._send_broadcast, index))
        replacements = round(config.churn * config.nodes)
        churn_times = [
            plan.uniform(self.first_broadcast_at, self.last_broadcast_at) for _ in range(replacements)
        ]
        for crash_time in sorted(churn_times):
            sim.at(crash_time, self._replace_one)
        sim.run_until(self.end_at)
        return _report(sim, config, self._sent, self.crashed, self._next_index - config.nodes)

    def _new_peer(self) -> PeerId:
        self._next_index += 1
        return _peer_name(self._next_index - 1)

    def _spawn_through_live(self, peer: PeerId) -> None:
        live = self.sim.live_peers()
        bootstrap = self._plan.sample(live, min(len(live), self.config.bootstrap_peers))
        self.sim.add_node(peer, bootstrap, b"addr:" + peer)

    def _send_broadcast(self, index: int) -> None:
        config, sim = self.config, self.sim
        settled = [p for p in sim.live_peers() if sim.nodes[p].joined_at + config.settle_time <= sim.now]
        origin = self._plan.choice(settled)
        self._protected_until[origin] = max(self._protected_until.get(origin, 0.0), sim.now + config.window)
        body = b"broadcast %d of seed %d " % (index, config.seed)
        payload = body + self._plan.randbytes(max(0, config.payload_size - len(body)))
        sim.traffic[message_id(payload)] = MessageTraffic()
        at = sim.now
        sim.broadcast(origin, payload, at, lambda msg_id: self._sent.append((index, at, origin, msg_id)))

    def _replace_one(self) -> None:
        now = self.sim.now
        candidates = [p for p in self.sim.live_peers() if self._protected_until.get(p, 0.0) < now]
        if candidates:
            self.sim.crash_node(self._plan.choice(candidates))
            self.crashed += 1
        self._spawn_through_live(self._new_peer())


def run_scenario(config: ScenarioConfig) -> SimReport:
    """Run the standard experiment (see Scenario) and report on it."""
    return Scenario(config).run()


def _report(
    sim: GossipSim,
    config: ScenarioConfig,
    sent: list[tuple[int, float, PeerId, MessageId]],
    crashed: int,
    newcomers: int,
) -> SimReport:
    broadcasts: list[BroadcastReport] = []
    all_latencies: list[float] = []
    all_hops: list[int] = []
    total_eligible = total_delivered = total_deliveries = 0
    total_copies = total_overhead = 0
    for index, sent_at, origin, msg_id in sent:
        window_end = sent_at + config.window
        eligible = [
            node
            for node in sim.nodes.values()
            if node.peer != origin
            and node.joined_at + config.settle_time <= sent_at
            and (node.crashed_at is None or node.crashed_at > window_end)
        ]
        received = sim.deliveries.get(msg_id, {})
        latencies: list[float] = []
        hops: list[int] = []
        for node in eligible:
            got = received.get(node.peer)
            if got is not None and got[0] <= window_end:
                latencies.append((got[0] - sent_at) * 1000.0)
                hops.append(got[1])
        traffic = sim.traffic[msg_id]
        broadcasts.append(
            BroadcastReport(
                index=index,
                sent_at=sent_at,
                eligible=len(eligible),
                delivered=len(latencies),
                deliveries=len(received),
                max_hops=max(hops, default=0),
                mean_hops=sum(hops) / len(hops) if hops else 0.0,
                payload_copies=traffic.payload_copies,
                ihave_entries=traffic.ihave_entries,
                graft_requests=traffic.graft_requests,
                latency_p50_ms=percentile(latencies, 0.5),
                latency_p99_ms=percentile(latencies, 0.99),
            )
        )
        all_latencies += latencies
        all_hops += hops
        total_eligible += len(eligible)
        total_delivered += len(latencies)
        total_deliveries += len(received)
        total_copies += traffic.payload_copies
        total_overhead += traffic.payload_copies + traffic.ihave_entries + traffic.graft_requests
    live = [node for node in sim.nodes.values() if node.alive]
    return SimReport(
        nodes=config.nodes,
        seed=config.seed,
        broadcasts=tuple(broadcasts),
        delivery_ratio=total_delivered / total_eligible if total_eligible else 1.0,
        mean_hops=sum(all_hops) / len(all_hops) if all_hops else 0.0,
        max_hops=max(all_hops, default=0),
        redundancy=total_overhead / total_deliveries if total_deliveries else 0.0,
        payload_redundancy=total_copies / total_deliveries if total_deliveries else 0.0,
        latency_p50_ms=percentile(all_latencies, 0.5),
        latency_p99_ms=percentile(all_latencies, 0.99),
        crashed=crashed,
        newcomers=newcomers,
        duplicate_deliveries=sim.duplicate_deliveries,
        asymmetric_links=sim.asymmetric_links(),
        isolated_nodes=sum(1 for node in live if not node.gossip.active_view),
        mean_active_view=sum(len(node.gossip.active_view) for node in live) / len(live) if live else 0.0,
        frames_delivered=sim.frames_delivered,
        events_processed=sim.events_processed,
    )
