"""Property-based tests: arbitrary message sequences against a model of the broker.

Hypothesis draws a sequence of actions by three workers and three clients
(DEALER sockets with binary identities, so that they can also send what no
REQ socket would): READY with either token, requests with bodies of any
frames (empty ones, up to 1 MB), replies, and malformed messages on both
sockets. A small model predicts the broker's counters after each action; the
test waits for the broker to match it, and checks every request the workers
receive and every reply the clients receive against the model. At the end
every worker is made to answer until nothing is outstanding: every request
must then have had exactly one reply, at its own client.

Each example runs on a fresh event loop and context (hypothesis calls the
test many times, which pytest fixtures cannot follow), on inproc endpoints.
Any ERROR logged (an exception escaping a callback) fails the test through
the suite's autouse fixture.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lb_ioloop import LoadBalancingBroker

from .peers import until

# Everything here is inproc on one loop and happens within milliseconds; a
# short timeout keeps hypothesis's shrinking of a failure quick.
DEFAULT_TIMEOUT = 1.0

PEERS = 3

identities = st.lists(
    st.binary(min_size=1, max_size=8).filter(lambda b: b[0] != 0),  # 0x00... is reserved
    min_size=2 * PEERS,
    max_size=2 * PEERS,
    unique=True,
)
BIG = b"x" * 1_000_000
BIG_MARK = b"<1 MB>"  # drawn instead of BIG, so a failing example prints short
# Mostly small frames, some empty, one in about twenty a 1 MB frame.
frame = st.integers(0, 19).flatmap(
    lambda k: st.just(BIG_MARK) if k == 0 else st.just(b"") if k == 1 else st.binary(max_size=16)
)
body = st.lists(frame, min_size=1, max_size=3)
peer = st.integers(0, PEERS - 1)
not_empty = st.binary(min_size=1, max_size=8)

actions = st.lists(
    st.one_of(
        st.tuples(st.just("ready"), peer, st.sampled_from([b"READY", b"\x01"])),
        st.tuples(st.just("request"), peer, body),
        st.tuples(st.just("reply"), peer),
        # Malformed on the backend: no delimiter; nothing after it; an empty
        # return address; no return address; nothing after the reply's delimiter.
        st.tuples(st.just("junk-backend"), peer, st.lists(not_empty, min_size=1, max_size=3)),
        st.tuples(st.just("junk-backend"), peer, st.just([b""])),
        st.tuples(st.just("junk-backend"), peer, st.tuples(st.just(b""), st.just(b""), not_empty)),
        st.tuples(
            st.just("junk-backend"),
            peer,
            st.tuples(st.just(b""), not_empty.filter(lambda b: b not in (b"READY", b"\x01"))),
        ),
        st.tuples(st.just("junk-backend"), peer, st.tuples(st.just(b""), not_empty, st.just(b""))),
        # Malformed on the frontend: no delimiter; nothing after it.
        st.tuples(st.just("junk-frontend"), peer, st.lists(not_empty, min_size=1, max_size=3)),
        st.tuples(st.just("junk-frontend"), peer, st.just([b""])),
    ),
    max_size=40,
)


@dataclass
class Model:
    """What the broker should have done so far."""

    ready: list[int] = field(default_factory=list)  # worker indexes, LRU first
    held: dict[int, deque[list[bytes]]] = field(default_factory=dict)  # worker -> requests
    queued: list[tuple[int, list[bytes]]] = field(default_factory=list)  # waiting in ZeroMQ
    awaiting: list[tuple[int, list[bytes]]] = field(default_factory=list)  # (client, reply)
    requests: int = 0
    replies: int = 0
    malformed: int = 0

    def counters(self) -> tuple[int, int, int, int]:
        return (len(self.ready), self.requests, self.replies, self.malformed)


def _is_req_shaped(frames: list[bytes]) -> bool:
    """Written out here, not taken from lb_ioloop.protocol: the model's own rule."""
    return len(frames) >= 2 and frames[0] == b""


def expand(step: tuple[Any, ...]) -> tuple[Any, ...]:
    if step[0] != "request":
        return step
    return (*step[:2], [BIG if f == BIG_MARK else f for f in step[2]])


async def scenario(ids: list[bytes], steps: list[tuple[Any, ...]]) -> None:
    steps = [expand(step) for step in steps]
    context: zmq.asyncio.Context = zmq.asyncio.Context()
    sync = zmq.Context.shadow(context.underlying)
    frontend, backend = sync.socket(zmq.ROUTER), sync.socket(zmq.ROUTER)
    frontend.bind(f"inproc://front-{id(context)}")
    backend.bind(f"inproc://back-{id(context)}")
    broker = LoadBalancingBroker(frontend, backend)
    broker.start()
    sockets = []

    def dealer(identity: bytes, endpoint: str) -> Any:
        sock = context.socket(zmq.DEALER)
        sock.linger = 0
        sock.identity = identity
        sock.connect(endpoint)
        sockets.append(sock)
        return sock

    try:
        workers = [dealer(ids[n], broker.backend_endpoint) for n in range(PEERS)]
        clients = [dealer(ids[PEERS + n], broker.frontend_endpoint) for n in range(PEERS)]
        model = Model(held={n: deque() for n in range(PEERS)})

        async def settled() -> None:
            def matches() -> bool:
                c = broker.counters
                return (
                    c.workers_ready,
                    c.requests_routed,
                    c.replies_routed,
                    c.malformed_dropped,
                ) == model.counters()

            await until(matches, DEFAULT_TIMEOUT)

        async def worker_takes(w: int) -> None:
            """Worker ``w`` was just given a queued request: receive and match it."""
            frames = await asyncio.wait_for(workers[w].recv_multipart(), DEFAULT_TIMEOUT)
            assert frames[0] == b""
            sender = ids.index(frames[1]) - PEERS
            entry = (sender, frames[3:])
            assert frames[2] == b"" and entry in model.queued, "a request nobody sent"
            model.queued.remove(entry)
            model.held[w].append(frames[1:])

        async def becomes_ready(w: int) -> None:
            if w in model.ready:
                return
            if model.queued:  # the broker hands it a waiting request at once
                model.requests += 1
                await settled()
                await worker_takes(w)
            else:
                model.ready.append(w)

        async def barrier(w: int) -> None:
            # Nothing visible happens (a duplicate READY): send a message whose
            # effect is visible from the same socket; ZeroMQ keeps their order.
            await workers[w].send_multipart([b"barrier"])
            model.malformed += 1
            await settled()

        for step in steps:
            kind, n = step[0], step[1]
            if kind == "ready":
                await workers[n].send_multipart([b"", step[2]])
                if n in model.ready:
                    await barrier(n)
                else:
                    await becomes_ready(n)
                    await settled()
            elif kind == "request":
                await clients[n].send_multipart([b"", *step[2]])
                if model.ready:
                    w = model.ready.pop(0)
                    model.requests += 1
                    await settled()
                    frames = await asyncio.wait_for(workers[w].recv_multipart(), DEFAULT_TIMEOUT)
                    assert frames == [b"", ids[PEERS + n], b"", *step[2]]
                    model.held[w].append(frames[1:])
                else:
                    model.queued.append((n, list(step[2])))
            elif kind == "reply":
                if not model.held[n]:
                    continue
                envelope_and_body = model.held[n].popleft()
                client, reply = (
                    ids.index(envelope_and_body[0]) - PEERS,
                    [b"re", *envelope_and_body[2:]],
                )
                await workers[n].send_multipart([b"", envelope_and_body[0], b"", *reply])
                model.replies += 1
                got = await asyncio.wait_for(clients[client].recv_multipart(), DEFAULT_TIMEOUT)
                assert got == [b"", *reply], "a reply reached the wrong client, or changed"
                await becomes_ready(n)
                await settled()
            elif kind == "junk-backend":
                frames = list(step[2])
                await workers[n].send_multipart(frames)
                model.malformed += 1
                if _is_req_shaped(frames):
                    await becomes_ready(n)
                await settled()
            elif kind == "junk-frontend":
                if not model.ready:
                    continue  # it would wait in ZeroMQ among the queued requests
                await clients[n].send_multipart(list(step[2]))
                model.malformed += 1
                await settled()
            assert len(set(broker._ready)) == len(broker._ready) == len(model.ready)
            assert list(broker._ready) == [ids[w] for w in model.ready], "not LRU order"

        # Drain: answer everything, and bring idle workers back for queued requests.
        while any(model.held.values()) or model.queued:
            for w in range(PEERS):
                while model.held[w]:
                    envelope_and_body = model.held[w].popleft()
                    client = ids.index(envelope_and_body[0]) - PEERS
                    await workers[w].send_multipart([b"", envelope_and_body[0], b"", b"done"])
                    model.replies += 1
                    got = await asyncio.wait_for(clients[client].recv_multipart(), DEFAULT_TIMEOUT)
                    assert got == [b"", b"done"]
                    await becomes_ready(w)
                    await settled()
            if model.queued and not model.ready:
                await workers[0].send_multipart([b"", b"READY"])
                await becomes_ready(0)
                await settled()
        assert broker.counters.requests_routed == broker.counters.replies_routed == model.replies

    finally:
        broker.close(linger_ms=0)
        for sock in sockets:
            sock.close(linger=0)
        context.term()


@settings(
    max_examples=150,
    deadline=None,
    # No shrinking: a failing example waits out timeouts at each step, and
    # shrinking would replay it hundreds of times. The first one is reported.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ids=identities, steps=actions)
def test_any_message_sequence_keeps_the_broker_consistent(ids, steps):
    asyncio.run(scenario(ids, steps))
