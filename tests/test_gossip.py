"""Gossip: wire format, HyParView membership, PlumTree broadcast (simulation: test_gossip_sim.py)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bisc.proto import gossip_wire as wire
from bisc.proto.gossip import (
    Deliver,
    Disconnect,
    Gossip,
    GossipConfig,
    GossipError,
    NeighborDown,
    NeighborUp,
    Output,
    PeerData,
    PeerId,
    Send,
)
from bisc.proto.gossip_sim import GossipSim, NetworkConfig

CONFIG = GossipConfig()
NO_LOSS = NetworkConfig(loss=0.0)


def node(name: str, seed: int = 0, config: GossipConfig = CONFIG) -> Gossip:
    return Gossip(name.encode(), config, random.Random(seed), peer_data=b"addr:" + name.encode())


def pump(nodes: dict[PeerId, Gossip], now: float, limit: int = 100_000) -> list[tuple[PeerId, Output]]:
    """Deliver every Send at once, in order, until nothing is left; returns the other outputs."""
    queue: list[tuple[PeerId, Output]] = [(peer, out) for peer, g in nodes.items() for out in g.drain()]
    events: list[tuple[PeerId, Output]] = []
    while queue:
        limit -= 1
        assert limit > 0, "messages never stopped"
        peer, output = queue.pop(0)
        if isinstance(output, Send):
            target = nodes.get(output.peer)
            if target is not None:
                target.handle_message(peer, output.data, now)
                queue += [(output.peer, out) for out in target.drain()]
        else:
            events.append((peer, output))
    return events


def of_type(events: Iterable[tuple[PeerId, Output]], kind: type) -> list[tuple[PeerId, Output]]:
    return [(peer, out) for peer, out in events if isinstance(out, kind)]


def small_sim(count: int, seed: int = 1, network: NetworkConfig = NO_LOSS, settle: float = 10.0) -> GossipSim:
    sim = GossipSim(network, CONFIG, seed)
    names = [b"n%03d" % i for i in range(count)]
    for i, name in enumerate(names):
        sim.spawn(name, names[max(0, i - 3) : i], at=i * 0.02)
    sim.run_until(count * 0.02 + settle)
    return sim


def assert_views_valid(g: Gossip, config: GossipConfig = CONFIG) -> None:
    active, passive = g.active_view, g.passive_view
    assert len(active) <= config.active_view_size
    assert len(passive) <= config.passive_view_size
    assert g.me not in active and g.me not in passive
    assert not set(active) & set(passive)
    assert len(set(active)) == len(active)
    assert set(g.eager_peers) | set(g.lazy_peers) == set(active)
    sizes = g.state_sizes()
    assert sizes["pending"] <= config.active_view_size + config.max_bootstrap_peers
    assert sizes["missing"] <= config.max_missing_messages
    assert sizes["seen"] <= config.seen_max
    assert sizes["cached_bytes"] <= config.payload_cache_max_bytes
    assert sizes["queued_ihaves"] <= config.active_view_size * config.ihave_batch_max


def connected(sim: GossipSim) -> bool:
    live = set(sim.live_peers())
    start = next(iter(live))
    seen, stack = {start}, [start]
    while stack:
        for other in sim.gossip(stack.pop()).active_view:
            if other in live and other not in seen:
                seen.add(other)
                stack.append(other)
    return seen == live


# --- wire format ---------------------------------------------------------------------------------

peer_ids = st.binary(min_size=1, max_size=wire.MAX_PEER_ID_SIZE)
msg_ids = st.binary(min_size=wire.MESSAGE_ID_SIZE, max_size=wire.MESSAGE_ID_SIZE)
peer_data = st.binary(max_size=64)
ttls = st.integers(0, wire.MAX_TTL)
hops = st.integers(0, wire.MAX_HOPS)
peer_entries = st.lists(st.tuples(peer_ids, peer_data), max_size=8).map(tuple)
wire_messages = st.one_of(
    st.builds(wire.JoinRequest, peer_data),
    st.builds(wire.ForwardJoin, peer_ids, peer_data, ttls),
    st.builds(wire.NeighborRequest, st.booleans(), peer_data),
    st.builds(wire.NeighborReply, st.booleans(), peer_data),
    st.builds(wire.DisconnectNotice, st.booleans()),
    st.builds(wire.ShuffleRequest, peer_ids, peer_data, ttls, peer_entries),
    st.builds(wire.ShuffleReply, peer_entries),
    st.builds(wire.EagerPush, msg_ids, hops, st.binary(max_size=256)),
    st.builds(wire.IHave, st.lists(st.tuples(msg_ids, hops), max_size=16).map(tuple)),
    st.builds(wire.Graft, st.lists(msg_ids, max_size=4).map(tuple)),
    st.just(wire.Prune()),
)


@given(wire_messages)
def test_every_message_survives_a_round_trip(message: wire.WireMessage) -> None:
    frame = wire.encode(message)
    assert wire.decode(frame) == message
    assert frame[1] == wire._to_fields(message)[0]  # the type tag comes first


def test_eager_push_fast_path_matches_the_generic_encoder() -> None:
    payload = b"x" * 300
    msg_id = wire.message_id(payload)
    assert wire.encode_eager_push(msg_id, 3, payload) == wire.encode(wire.EagerPush(msg_id, 3, payload))


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [99],  # unknown tag
        [True, b""],  # a bool is not a tag
        [wire.TAG_PRUNE, 1],  # extra field
        [wire.TAG_JOIN],  # missing field
        [wire.TAG_JOIN, "text"],  # str where bytes belong
        [wire.TAG_FORWARD_JOIN, b"j", b"", True],  # bool where an int belongs
        [wire.TAG_FORWARD_JOIN, b"j", b"", 256],  # ttl over its limit
        [wire.TAG_FORWARD_JOIN, b"", b"", 1],  # empty peer id
        [wire.TAG_FORWARD_JOIN, b"x" * 65, b"", 1],  # peer id too long
        [wire.TAG_EAGER_PUSH, b"short", 1, b""],  # message id of the wrong length
        [wire.TAG_EAGER_PUSH, b"i" * 16, -1, b""],  # negative hops
        [wire.TAG_IHAVE, [[b"i" * 16]]],  # entry without hops
        [wire.TAG_IHAVE, [[b"i" * 16, 1]] * (wire.MAX_IHAVE_ENTRIES + 1)],  # too many entries
        [wire.TAG_SHUFFLE_REPLY, [[b"p", b"d"]] * (wire.MAX_SHUFFLE_ENTRIES + 1)],
        [wire.TAG_JOIN, b"d" * (wire.MAX_PEER_DATA_SIZE + 1)],
        [wire.TAG_GRAFT, {b"a": 1}],  # a map where a list belongs
    ],
)
def test_decode_rejects_invalid_frames(fields: list[object]) -> None:
    with pytest.raises(GossipError):
        wire.decode(msgpack.packb(fields, use_bin_type=True))


def test_decode_rejects_oversize_trailing_and_garbage_frames() -> None:
    valid = wire.encode(wire.Prune())
    for frame in (valid + b"\x00", b"", b"\xc1", b"\x91", b"\xff" * 10, b"\x00" * (wire.MAX_FRAME_SIZE + 1)):
        with pytest.raises(GossipError):
            wire.decode(frame)


def test_encode_rejects_frames_over_the_limit_and_invalid_fields() -> None:
    with pytest.raises(GossipError):
        wire.encode(wire.EagerPush(b"i" * 16, 1, b"x" * wire.MAX_FRAME_SIZE))
    with pytest.raises(GossipError):
        wire.encode(wire.ForwardJoin(b"", b"", 1))
    with pytest.raises(GossipError):
        wire.encode(wire.Graft((b"short",)))


@given(st.binary(max_size=512))
def test_decode_raises_only_gossip_errors(data: bytes) -> None:
    with contextlib.suppress(GossipError):
        wire.decode(data)


# --- membership ----------------------------------------------------------------------------------


def test_join_makes_a_symmetric_link_and_reports_peer_data() -> None:
    a, b = node("a"), node("b", seed=1)
    nodes = {a.me: a, b.me: b}
    b.join([a.me], now=0.0)
    events = pump(nodes, now=0.0)
    assert a.active_view == [b"b"] and b.active_view == [b"a"]
    assert (b"a", NeighborUp(b"b")) in events and (b"b", NeighborUp(b"a")) in events
    assert (b"a", PeerData(b"b", b"addr:b")) in events and (b"b", PeerData(b"a", b"addr:a")) in events


def test_join_forms_symmetric_connected_bounded_views() -> None:
    sim = small_sim(60)
    assert sim.asymmetric_links() == 0
    assert connected(sim)
    for peer in sim.live_peers():
        g = sim.gossip(peer)
        assert_views_valid(g)
        assert len(g.active_view) >= 2
    mean_active = sum(len(sim.gossip(p).active_view) for p in sim.live_peers()) / 60
    assert mean_active >= 4.5
    assert any(sim.gossip(p).passive_view for p in sim.live_peers())


def test_a_popular_contact_keeps_its_views_bounded() -> None:
    contact = node("contact")
    joiners = {f"j{i}".encode(): node(f"j{i}", seed=i) for i in range(60)}
    nodes = {contact.me: contact, **joiners}
    for i, joiner in enumerate(joiners.values()):
        joiner.join([contact.me], now=i * 0.01)
        pump(nodes, now=i * 0.01)
    for g in nodes.values():
        assert_views_valid(g)
    assert len(contact.active_view) == CONFIG.active_view_size
    for peer in contact.active_view:
        assert contact.me in nodes[peer].active_view  # evictions were told to the evicted


def test_failed_neighbour_is_replaced_from_the_passive_view() -> None:
    sim = small_sim(30, network=NetworkConfig(detect_delay_min=0.5, detect_delay_max=0.5))
    victim = sim.live_peers()[10]
    neighbours = sim.gossip(victim).active_view
    sim.crash_node(victim)
    sim.run_until(sim.now + 5.0)
    for peer in neighbours:
        g = sim.gossip(peer)
        assert victim not in g.active_view and victim not in g.passive_view
        assert len(g.active_view) >= CONFIG.active_view_size - 1
    assert sim.asymmetric_links() == 0
    assert connected(sim)


def test_leave_tells_the_neighbours_and_stops_the_node() -> None:
    sim = small_sim(20)
    leaver = sim.live_peers()[5]
    neighbours = sim.gossip(leaver).active_view
    sim.leave(leaver, at=sim.now)
    sim.run_until(sim.now + 2.0)  # less than a failure detection: only the notice can explain it
    for peer in neighbours:
        assert leaver not in sim.gossip(peer).active_view
        assert leaver not in sim.gossip(peer).passive_view
    g = sim.gossip(leaver)
    assert g.has_left and g.poll_timeout() is None
    with pytest.raises(GossipError):
        g.broadcast(b"after leaving", sim.now)


def test_shuffles_refresh_passive_views() -> None:
    sim = small_sim(40, settle=5.0)
    before = {p: set(sim.gossip(p).passive_view) for p in sim.live_peers()}
    sim.run_until(sim.now + 2 * CONFIG.shuffle_interval)
    assert sum(sim.gossip(p).stats().shuffles_sent for p in sim.live_peers()) >= 40
    changed = sum(1 for p in sim.live_peers() if set(sim.gossip(p).passive_view) != before[p])
    assert changed >= 20


def test_a_shuffle_walk_end_answers_the_origin_with_a_bounded_sample() -> None:
    g = node("x")
    g.handle_message(b"n", wire.encode(wire.NeighborRequest(True, b"")), 0.0)  # one neighbour: walks end here
    g.drain()
    many = tuple((b"p%02d" % i, b"addr:%02d" % i) for i in range(wire.MAX_SHUFFLE_ENTRIES))
    g.handle_message(b"n", wire.encode(wire.ShuffleRequest(b"origin", b"addr:origin", 3, many)), 1.0)
    outputs = g.drain()
    assert len(g.passive_view) == CONFIG.passive_view_size
    assert outputs[0] == PeerData(b"origin", b"addr:origin")  # so the runtime can dial the origin
    replies = [o for o in outputs if isinstance(o, Send) and o.peer == b"origin"]
    assert len(replies) == 1
    reply = wire.decode(replies[0].data)
    assert isinstance(reply, wire.ShuffleReply)
    assert len(reply.entries) == 0  # nothing in reserve before this shuffle
    g.handle_message(b"n", wire.encode(wire.ShuffleRequest(b"origin2", b"", 0, many)), 2.0)
    reply = wire.decode(next(o.data for o in g.drain() if isinstance(o, Send) and o.peer == b"origin2"))
    assert isinstance(reply, wire.ShuffleReply)
    assert len(reply.entries) == CONFIG.shuffle_active_count + CONFIG.shuffle_passive_count + 1
    assert all(data.startswith(b"addr:") for _, data in reply.entries)
    assert_views_valid(g)


def test_isolated_node_rejoins_through_its_bootstrap() -> None:
    a, b = node("a"), node("b", seed=1)
    nodes = {a.me: a, b.me: b}
    b.join([a.me], now=0.0)
    pump(nodes, now=0.0)
    b.handle_disconnected(a.me, now=1.0)  # say a flaky link; a is in fact still there
    assert b.active_view == []
    t = b.poll_timeout()
    assert t is not None
    b.handle_timeout(max(t, 1.0 + CONFIG.neighbor_request_timeout))
    pump(nodes, now=7.0)
    assert b.active_view == [b"a"] and a.active_view == [b"b"]


# --- broadcast -------------------------------------------------------------------------------------


def test_every_node_delivers_each_broadcast_exactly_once() -> None:
    sim = small_sim(40)
    origin_ids: list[bytes] = []
    for i, origin in enumerate(sim.live_peers()[:5]):
        sim.broadcast(origin, b"message %d" % i, at=sim.now + i * 0.1, on_sent=origin_ids.append)
    sim.run_until(sim.now + 3.0)
    assert sim.duplicate_deliveries == 0
    for i, msg_id in enumerate(origin_ids):
        receivers = sim.deliveries[msg_id]
        assert len(receivers) == 39  # everyone but the origin
        assert msg_id == wire.message_id(b"message %d" % i)
    duplicates = sum(sim.gossip(p).stats().duplicates for p in sim.live_peers())
    prunes = sum(sim.gossip(p).stats().prunes_sent for p in sim.live_peers())
    assert duplicates > 0 and prunes > 0  # links start eager; duplicates prune them to lazy
    assert any(sim.gossip(p).lazy_peers for p in sim.live_peers())


def test_duplicate_payloads_are_suppressed_and_prune_the_link() -> None:
    receiver = node("r")
    frame = wire.encode_eager_push(wire.message_id(b"hello"), 1, b"hello")
    receiver.handle_message(b"s", wire.encode(wire.NeighborRequest(True, b"")), 0.0)
    receiver.drain()
    receiver.handle_message(b"s", frame, 0.1)
    assert [o for o in receiver.drain() if isinstance(o, Deliver)] == [
        Deliver(wire.message_id(b"hello"), b"hello", 1, b"s")
    ]
    receiver.handle_message(b"s", frame, 0.2)
    outputs = receiver.drain()
    assert not [o for o in outputs if isinstance(o, Deliver)]
    assert Send(b"s", wire.encode(wire.Prune())) in outputs
    assert receiver.lazy_peers == [b"s"]
    assert receiver.stats().duplicates == 1


def test_own_broadcast_again_is_not_sent_twice() -> None:
    a, b = node("a"), node("b", seed=1)
    nodes = {a.me: a, b.me: b}
    b.join([a.me], now=0.0)
    pump(nodes, now=0.0)
    first = a.broadcast(b"same", now=1.0)
    assert a.broadcast(b"same", now=1.1) == first
    delivered = of_type(pump(nodes, now=1.2), Deliver)
    assert delivered == [(b"b", Deliver(first, b"same", 1, b"a"))]
    assert a.stats().broadcasts == 1


def test_a_payload_whose_id_does_not_match_is_never_delivered() -> None:
    receiver = node("r")
    receiver.handle_message(b"s", wire.encode(wire.NeighborRequest(True, b"")), 0.0)
    forged = wire.encode(wire.EagerPush(wire.message_id(b"original"), 1, b"forged"))
    receiver.handle_message(b"s", forged, 0.1)
    assert not [o for o in receiver.drain() if isinstance(o, Deliver)]
    assert receiver.stats().id_mismatches == 1
    # A later genuine copy of either payload is still delivered.
    receiver.handle_message(b"s", wire.encode_eager_push(wire.message_id(b"forged"), 1, b"forged"), 0.2)
    assert [o.payload for o in receiver.drain() if isinstance(o, Deliver)] == [b"forged"]


def test_broadcast_over_the_size_limit_raises() -> None:
    config = GossipConfig(max_message_size=1000)
    g = node("a", config=config)
    g.broadcast(b"x" * 1000, now=0.0)
    with pytest.raises(GossipError):
        g.broadcast(b"x" * 1001, now=0.0)
    receiver = node("r", config=config)  # an oversize payload from a peer is rejected, not delivered
    receiver.handle_message(b"s", wire.encode_eager_push(wire.message_id(b"y" * 1001), 1, b"y" * 1001), 0.0)
    assert not [o for o in receiver.drain() if isinstance(o, Deliver)]
    assert receiver.stats().rejected_messages == 1


def test_missing_payload_is_grafted_from_one_announcer_then_the_next() -> None:
    g = node("x")
    for peer in (b"l1", b"l2"):
        g.handle_message(peer, wire.encode(wire.NeighborRequest(True, b"")), 0.0)
    payload = b"announced"
    msg_id = wire.message_id(payload)
    ihave = wire.encode(wire.IHave(((msg_id, 2),)))
    g.handle_message(b"l1", ihave, 1.0)
    g.handle_message(b"l2", ihave, 1.01)
    g.drain()
    assert g.poll_timeout() == pytest.approx(1.0 + CONFIG.graft_timeout)
    g.handle_timeout(1.1)  # early: nothing happens
    assert not g.drain()
    g.handle_timeout(1.0 + CONFIG.graft_timeout)
    graft = wire.encode(wire.Graft((msg_id,)))
    assert g.drain() == [Send(b"l1", graft)]
    t = g.poll_timeout()
    assert t is not None and t == pytest.approx(1.0 + CONFIG.graft_timeout + CONFIG.graft_retry_timeout)
    g.handle_timeout(t)
    assert g.drain() == [Send(b"l2", graft)]
    g.handle_message(b"l2", wire.encode_eager_push(msg_id, 2, payload), 1.5)
    assert Deliver(msg_id, payload, 2, b"l2") in g.drain()
    t = g.poll_timeout()
    assert t is None or t > 1.5 + CONFIG.graft_timeout  # no graft timer left


def test_graft_is_answered_from_the_payload_cache() -> None:
    a, b = node("a"), node("b", seed=1)
    nodes = {a.me: a, b.me: b}
    b.join([a.me], now=0.0)
    pump(nodes, now=0.0)
    msg_id = a.broadcast(b"cached", now=1.0)
    pump(nodes, now=1.0)
    a.handle_message(b"b", wire.encode(wire.Graft((msg_id, b"u" * 16))), 2.0)
    assert a.drain() == [Send(b"b", wire.encode_eager_push(msg_id, 1, b"cached"))]
    a.handle_timeout(1.0 + CONFIG.payload_cache_ttl + 1)  # too old to serve
    a.handle_message(b"b", wire.encode(wire.Graft((msg_id,))), 40.0)
    assert a.drain() == []


def test_lazy_peers_get_batched_ihaves_on_a_timer() -> None:
    g = node("x")
    for peer in (b"p", b"q"):
        g.handle_message(peer, wire.encode(wire.NeighborRequest(True, b"")), 0.0)
    g.handle_message(b"q", wire.encode(wire.Prune()), 0.0)  # q is now lazy
    g.drain()
    ids = [g.broadcast(b"m%d" % i, now=1.0 + i * 0.01) for i in range(3)]
    sent = g.drain()
    assert [s.peer for s in sent if isinstance(s, Send)] == [b"p", b"p", b"p"]  # eager only, so far
    t = g.poll_timeout()
    assert t is not None and t == pytest.approx(1.0 + CONFIG.ihave_interval)
    g.handle_timeout(t)
    assert g.drain() == [Send(b"q", wire.encode(wire.IHave(tuple((i, 1) for i in ids))))]


def test_tree_repairs_itself_when_a_relay_fails() -> None:
    # Failure detection slower than the test: only PlumTree's IHave/Graft can route around the relay.
    sim = small_sim(40, network=NetworkConfig(detect_delay_min=30.0, detect_delay_max=30.0))
    origin = sim.live_peers()[0]
    for i in range(3):  # settle the eager tree
        sim.broadcast(origin, b"warm-up %d" % i, at=sim.now + i * 0.2)
    sim.run_until(sim.now + 2.0)
    relay = max(sim.live_peers()[1:], key=lambda p: len(sim.gossip(p).eager_peers))
    assert len(sim.gossip(relay).eager_peers) >= 2
    sim.crash_node(relay)
    grafts_before = sum(sim.gossip(p).stats().grafts_sent for p in sim.live_peers())
    sent: list[bytes] = []
    sim.broadcast(origin, b"after the failure", at=sim.now, on_sent=sent.append)
    sim.run_until(sim.now + 3.0)
    receivers = sim.deliveries[sent[0]]
    assert set(receivers) == set(sim.live_peers()) - {origin}
    assert sum(sim.gossip(p).stats().grafts_sent for p in sim.live_peers()) > grafts_before


# --- robustness ----------------------------------------------------------------------------------

any_msgpack = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=20,
)
tagged_frames = st.builds(
    lambda tag, rest: msgpack.packb([tag, *rest], use_bin_type=True),
    st.integers(0, 12),
    st.lists(any_msgpack, max_size=5),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([b"p1", b"p2", b"p3"]), st.binary(max_size=64) | tagged_frames), max_size=30
    )
)
def test_garbage_frames_are_counted_and_ignored(frames: list[tuple[bytes, bytes]]) -> None:
    g = node("x")
    g.join([b"p1"], now=0.0)
    for i, (sender, frame) in enumerate(frames):
        g.handle_message(sender, frame, now=i * 0.01)
        g.handle_timeout(i * 0.01)
    assert_views_valid(g)
    stats = g.stats()
    assert stats.frames_received == len(frames)
    assert stats.malformed_frames + stats.rejected_messages <= len(frames)


valid_traffic = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=4),  # many different senders
        wire_messages,
        st.floats(0.0, 0.5),
    ),
    max_size=120,
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(valid_traffic, st.integers(0, 2**32))
def test_state_stays_bounded_under_arbitrary_valid_traffic(traffic, seed: int) -> None:
    config = GossipConfig(max_missing_messages=8, max_announcers_per_message=2, seen_max=16)
    g = node("x", seed=seed, config=config)
    now = 0.0
    for sender, message, step in traffic:
        now += step
        g.handle_message(sender, wire.encode(message), now)
        if (t := g.poll_timeout()) is not None and t <= now:
            g.handle_timeout(now)
        assert_views_valid(g, config)
    outputs = g.drain()
    delivered = [o.msg_id for o in outputs if isinstance(o, Deliver)]
    assert len(delivered) == len(set(delivered)) or len(delivered) > config.seen_max  # once per id
    for o in outputs:
        if isinstance(o, Deliver):
            assert wire.message_id(o.payload) == o.msg_id


def test_config_and_constructor_validate_their_limits() -> None:
    with pytest.raises(GossipError):
        GossipConfig(active_view_size=0)
    with pytest.raises(GossipError):
        GossipConfig(max_message_size=wire.MAX_FRAME_SIZE)
    with pytest.raises(GossipError):
        GossipConfig(shuffle_jitter=40.0)
    with pytest.raises(GossipError):
        Gossip(b"me", CONFIG, random.Random(0), peer_data=b"x" * (CONFIG.max_peer_data_size + 1))
    with pytest.raises(GossipError):
        Gossip(b"", CONFIG, random.Random(0))


def test_outputs_of_a_disconnect_round() -> None:
    a, b = node("a"), node("b", seed=1)
    nodes = {a.me: a, b.me: b}
    b.join([a.me], now=0.0)
    pump(nodes, now=0.0)
    a.leave(now=1.0)
    events = pump(nodes, now=1.0)
    assert (b"a", NeighborDown(b"b")) in events and (b"a", Disconnect(b"b")) in events
    assert (b"b", NeighborDown(b"a")) in events
    assert b.active_view == [] and b.passive_view == []
