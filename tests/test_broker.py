"""The broker on a real IOLoop, with real sockets on 127.0.0.1 and peers on the loop."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import zmq

from lb_ioloop import LoadBalancingBroker
from lb_ioloop import broker as broker_module

from .peers import Worker, echo, nothing_arrives, receive, split_envelope, until


def workers(zmq_contexts: Any, broker: LoadBalancingBroker, count: int) -> list[Worker]:
    return [
        Worker(zmq_contexts, broker.backend_endpoint, f"worker-{n}".encode())
        for n in range(1, count + 1)
    ]


def client(
    zmq_contexts: Any,
    broker: LoadBalancingBroker,
    kind: int = zmq.REQ,
    identity: bytes | None = None,
) -> Any:
    sock = zmq_contexts.socket(kind)
    if identity is not None:
        sock.identity = identity
    sock.connect(broker.frontend_endpoint)
    return sock


async def ready_in_order(broker: LoadBalancingBroker, crew: list[Worker]) -> None:
    """Make the workers ready one at a time, so their queue order is known."""
    for count, worker in enumerate(crew, start=1):
        await worker.ready()
        await until(lambda count=count: broker.counters.workers_ready == count)


async def which_got_it(crew: list[Worker]) -> Worker:
    """The one worker of ``crew`` that has a request waiting."""

    def holding(worker: Worker) -> bool:
        return bool(worker.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN)

    await until(lambda: any(holding(w) for w in crew))
    holders = [w for w in crew if holding(w)]
    assert len(holders) == 1, f"{len(holders)} workers got the single request"
    return holders[0]


@pytest.mark.gen_test
async def test_requests_go_to_the_least_recently_used_worker(zmq_contexts, make_broker):
    broker = make_broker()
    crew = workers(zmq_contexts, broker, 3)
    await ready_in_order(broker, crew)
    sender = client(zmq_contexts, broker, zmq.DEALER)

    # Queue: 1 2 3. Each served worker goes to the back; the guide's Python
    # version (list.pop) would hand every request to the same worker.
    served = []
    for _ in range(6):
        await sender.send_multipart([b"", b"HELLO"])
        worker = await which_got_it(crew)
        envelope, body = await worker.take()
        assert body == [b"HELLO"]
        await worker.answer(envelope, b"OK")
        assert await receive(sender) == [b"", b"OK"]
        await until(lambda: broker.counters.workers_ready == 3)
        served.append(worker.identity)
    assert served == [b"worker-1", b"worker-2", b"worker-3"] * 2


@pytest.mark.gen_test
async def test_requests_wait_in_zeromq_until_a_worker_is_ready(zmq_contexts, make_broker):
    broker = make_broker()
    senders = [client(zmq_contexts, broker) for _ in range(3)]
    for n, sender in enumerate(senders):
        await sender.send(b"request-%d" % n)
    # Nothing is read while no worker is ready: the requests stay in ZeroMQ.
    assert not broker.accepting_requests
    assert broker.counters.requests_routed == 0

    (worker,) = workers(zmq_contexts, broker, 1)
    worker.serve(echo)
    await worker.ready()
    replies = sorted([(await receive(sender))[0] for sender in senders])
    assert replies == [b"request-0", b"request-1", b"request-2"]
    assert broker.counters.requests_routed == 3
    assert broker.counters.replies_routed == 3


@pytest.mark.gen_test
async def test_frontend_reception_toggles_only_at_empty_and_non_empty(
    zmq_contexts, make_broker, monkeypatch
):
    broker = make_broker()
    stream = broker._frontend_stream
    toggles: list[str] = []
    real_on_recv = stream.on_recv

    def spy_on_recv(callback: Any, copy: bool = True) -> None:
        toggles.append("stop" if callback is None else "start")
        real_on_recv(callback, copy)

    monkeypatch.setattr(stream, "on_recv", spy_on_recv)
    monkeypatch.setattr(stream, "stop_on_recv", lambda: spy_on_recv(None))

    assert not broker.accepting_requests
    crew = workers(zmq_contexts, broker, 2)
    await ready_in_order(broker, crew)  # 0 -> 1 starts, 1 -> 2 does nothing
    assert toggles == ["start"]
    assert broker.accepting_requests

    sender = client(zmq_contexts, broker, zmq.DEALER)
    await sender.send_multipart([b"", b"one"])
    await until(lambda: broker.counters.workers_ready == 1)  # 2 -> 1: nothing
    assert toggles == ["start"]
    await sender.send_multipart([b"", b"two"])
    await until(lambda: broker.counters.workers_ready == 0)  # 1 -> 0: stop
    assert toggles == ["start", "stop"]
    assert not broker.accepting_requests

    envelope, _ = await crew[0].take()
    await crew[0].answer(envelope, b"OK")  # 0 -> 1: start again
    await until(lambda: broker.counters.workers_ready == 1)
    assert toggles == ["start", "stop", "start"]
    assert broker.accepting_requests


@pytest.mark.gen_test
async def test_client_behind_another_router_hop_gets_its_reply(zmq_contexts, make_broker):
    broker = make_broker()
    (worker,) = workers(zmq_contexts, broker, 1)
    worker.serve()
    await worker.ready()

    # A real hop: REQ client -> ROUTER|DEALER forwarder -> broker frontend.
    hop_front = zmq_contexts.socket(zmq.ROUTER)
    hop_port = hop_front.bind_to_random_port("tcp://127.0.0.1")
    hop_back = client(zmq_contexts, broker, zmq.DEALER, identity=b"hop")

    async def forward(source: Any, sink: Any) -> None:
        while True:
            await sink.send_multipart(await source.recv_multipart())

    tasks = [
        asyncio.ensure_future(forward(hop_front, hop_back)),
        asyncio.ensure_future(forward(hop_back, hop_front)),
    ]
    far_client = zmq_contexts.socket(zmq.REQ)
    far_client.identity = b"far-client"
    far_client.connect(f"tcp://127.0.0.1:{hop_port}")
    await far_client.send(b"HELLO")
    assert await receive(far_client) == [b"OK"]
    # The worker saw a two-frame return address: the hop, then the client.
    envelope, body = split_envelope(worker.requests[0])
    assert envelope == [b"hop", b"far-client"]
    assert body == [b"HELLO"]
    for task in tasks:
        task.cancel()


@pytest.mark.gen_test
async def test_bodies_of_several_frames_travel_whole_both_ways(zmq_contexts, make_broker):
    broker = make_broker()
    (worker,) = workers(zmq_contexts, broker, 1)
    await worker.ready()
    sender = client(zmq_contexts, broker, zmq.DEALER)
    await sender.send_multipart([b"", b"part-1", b"", b"part-3", b""])
    envelope, body = await worker.take()
    assert body == [b"part-1", b"", b"part-3", b""]
    await worker.answer(envelope, b"", b"reply-2", b"")
    assert await receive(sender) == [b"", b"", b"reply-2", b""]


@pytest.mark.gen_test
async def test_a_client_named_ready_still_gets_its_replies(zmq_contexts, make_broker):
    broker = make_broker()
    (worker,) = workers(zmq_contexts, broker, 1)
    worker.serve()
    await worker.ready()
    ready_client = client(zmq_contexts, broker, identity=b"READY")
    for _ in range(2):
        await ready_client.send(b"HELLO")
        assert await receive(ready_client) == [b"OK"]
    await until(lambda: broker.counters.workers_ready == 1)
    assert broker.counters.replies_routed == 2
    assert broker.counters.malformed_dropped == 0


@pytest.mark.gen_test
@pytest.mark.parametrize("token", [b"READY", b"\x01"])
async def test_both_ready_tokens_make_a_worker_ready(zmq_contexts, make_broker, token):
    broker = make_broker()
    worker = Worker(zmq_contexts, broker.backend_endpoint, b"w", token=token)
    worker.serve()
    await worker.ready()
    await until(lambda: broker.counters.workers_ready == 1)
    sender = client(zmq_contexts, broker)
    await sender.send(b"HELLO")
    assert await receive(sender) == [b"OK"]


@pytest.mark.gen_test
async def test_a_duplicate_ready_does_not_double_the_worker(zmq_contexts, make_broker):
    broker = make_broker()
    dealer_worker = zmq_contexts.socket(zmq.DEALER)
    dealer_worker.identity = b"twice"
    dealer_worker.connect(broker.backend_endpoint)
    await dealer_worker.send_multipart([b"", b"READY"])
    await dealer_worker.send_multipart([b"", b"READY"])
    await until(lambda: broker.counters.workers_ready == 1)
    sender = client(zmq_contexts, broker, zmq.DEALER)
    await sender.send_multipart([b"", b"one"])
    await sender.send_multipart([b"", b"two"])
    first = await receive(dealer_worker)
    assert first[-1] == b"one"
    # Only one slot: the second request waits until the first is answered.
    assert await nothing_arrives(dealer_worker)
    await dealer_worker.send_multipart([b"", *first[1:-1], b"OK-1"])
    second = await receive(dealer_worker)
    assert second[-1] == b"two"


# -- malformed messages: dropped, logged with their shape, counted; serving goes on


BACKEND_MALFORMED = {
    "no delimiter": ([b"garbage"], False),
    "nothing after the delimiter": ([b""], False),
    "empty return address": ([b"", b"", b"OK"], True),
    "no return address": ([b"", b"OK"], True),
    "nothing after the reply's delimiter": ([b"", b"client", b""], True),
}


@pytest.mark.gen_test
@pytest.mark.parametrize("shape", sorted(BACKEND_MALFORMED))
async def test_malformed_worker_message_is_dropped_and_serving_goes_on(
    zmq_contexts, make_broker, caplog, shape
):
    frames, worker_is_waiting = BACKEND_MALFORMED[shape]
    broker = make_broker()
    bad = zmq_contexts.socket(zmq.DEALER)
    bad.identity = b"bad-worker"
    bad.connect(broker.backend_endpoint)
    with caplog.at_level(logging.WARNING, logger="lb_ioloop"):
        await bad.send_multipart(frames)
        await until(lambda: broker.counters.malformed_dropped == 1)
    (record,) = [r for r in caplog.records if r.name == "lb_ioloop.broker"]
    assert record.levelno == logging.WARNING
    assert "backend" in record.getMessage() and "frames [" in record.getMessage()
    # A REQ-shaped message leaves a REQ worker waiting for work: keep its slot.
    assert broker.counters.workers_ready == (1 if worker_is_waiting else 0)

    (good,) = workers(zmq_contexts, broker, 1)
    good.serve()
    await good.ready()
    sender = client(zmq_contexts, broker)
    await sender.send(b"HELLO")
    if worker_is_waiting:  # the bad worker is first in line: it gets the work
        request = await receive(bad)
        await bad.send_multipart([b"", *request[1:-1], b"OK"])
    assert await receive(sender) == [b"OK"]
    await sender.send(b"HELLO")
    assert await receive(sender) == [b"OK"]
    assert broker.counters.malformed_dropped == 1


FRONTEND_MALFORMED = {
    "no delimiter": [b"HELLO"],
    "nothing after the delimiter": [b""],
    # An empty return address cannot reach the frontend: the ROUTER always
    # prepends the sender's non-empty identity (see test_protocol.py).
}


@pytest.mark.gen_test
@pytest.mark.parametrize("shape", sorted(FRONTEND_MALFORMED))
async def test_malformed_request_is_dropped_without_using_a_worker(
    zmq_contexts, make_broker, caplog, shape
):
    broker = make_broker()
    (worker,) = workers(zmq_contexts, broker, 1)
    worker.serve()
    await worker.ready()
    await until(lambda: broker.accepting_requests)
    bad = client(zmq_contexts, broker, zmq.DEALER)
    with caplog.at_level(logging.WARNING, logger="lb_ioloop"):
        await bad.send_multipart(FRONTEND_MALFORMED[shape])
        await until(lambda: broker.counters.malformed_dropped == 1)
    assert any("frontend" in r.getMessage() for r in caplog.records)
    assert broker.counters.workers_ready == 1
    assert broker.counters.requests_routed == 0
    sender = client(zmq_contexts, broker)
    await sender.send(b"HELLO")
    assert await receive(sender) == [b"OK"]


@pytest.mark.gen_test
async def test_good_requests_queued_behind_a_bad_one_are_all_answered(
    zmq_contexts, make_broker, caplog
):
    """good, bad, good, good arrive together, then silence: all good ones answered.

    In pyzmq 27 an exception raised from on_recv skips the stream's re-check of
    EVENTS, and the fd edge is already spent, so the two requests after a bad
    one would sit unread until some other peer sent something.
    """
    broker = make_broker()
    crew = workers(zmq_contexts, broker, 3)
    for worker in crew:
        worker.serve(echo)
    await ready_in_order(broker, crew)
    sender = client(zmq_contexts, broker, zmq.DEALER)
    with caplog.at_level(logging.WARNING, logger="lb_ioloop"):
        for frames in ([b"", b"good-1"], [b"bad"], [b"", b"good-2"], [b"", b"good-3"]):
            await sender.send_multipart(frames)
        replies = sorted([(await receive(sender))[1] for _ in range(3)])
    assert replies == [b"good-1", b"good-2", b"good-3"]
    assert broker.counters.malformed_dropped == 1


@pytest.mark.gen_test
async def test_requests_arriving_while_replies_go_out_are_not_left_unread(
    zmq_contexts, make_broker
):
    """Direct sends on the frontend must not make the broker miss new requests."""
    broker = make_broker()
    crew = workers(zmq_contexts, broker, 4)
    for worker in crew:
        worker.serve(echo)
    await ready_in_order(broker, crew)
    senders = [client(zmq_contexts, broker, zmq.DEALER) for _ in range(4)]
    for round_ in range(20):
        for n, sender in enumerate(senders):
            for k in range(5):
                await sender.send_multipart([b"", b"%d-%d-%d" % (round_, n, k)])
        for sender in senders:
            for _ in range(5):
                await receive(sender)
    # Then quiet, then one lone request: it must be answered without any
    # other traffic to wake the broker up.
    await until(lambda: broker.counters.workers_ready == 4)
    await senders[0].send_multipart([b"", b"lone"])
    assert await receive(senders[0]) == [b"", b"lone"]
    assert broker.counters.replies_routed == 20 * 4 * 5 + 1


@pytest.mark.gen_test
async def test_max_replies_stops_the_broker(zmq_contexts, make_broker):
    broker = make_broker(max_replies=2)
    (worker,) = workers(zmq_contexts, broker, 1)
    worker.serve()
    await worker.ready()
    sender = client(zmq_contexts, broker, zmq.DEALER)
    for n in range(3):
        await sender.send_multipart([b"", b"%d" % n])
    await broker.wait_stopped()
    assert not broker.running
    assert broker.counters.replies_routed == 2
    assert await receive(sender) == [b"", b"OK"]
    assert await receive(sender) == [b"", b"OK"]
    assert await nothing_arrives(sender)  # the third is never served


@pytest.mark.gen_test
async def test_stop_and_close_are_idempotent_and_repr_shows_state(make_broker):
    broker = make_broker()
    assert "running" in repr(broker) and "workers_ready=0" in repr(broker)
    broker.stop()
    broker.stop()
    await broker.wait_stopped()
    assert "stopped" in repr(broker)
    broker.close(linger_ms=0)
    broker.close(linger_ms=0)
    assert "closed" in repr(broker)


def test_start_outside_a_running_loop_is_a_clear_error(zmq_contexts):
    frontend = zmq_contexts.socket(zmq.ROUTER, asyncio=False)
    backend = zmq_contexts.socket(zmq.ROUTER, asyncio=False)
    broker = LoadBalancingBroker(frontend, backend)
    with pytest.raises(RuntimeError, match="running event loop"):
        broker.start()


@pytest.mark.parametrize(("hwm", "expected"), [(None, 1000), (7, 7), (0, 0)])
def test_from_endpoints_sets_the_hwm_of_both_sockets_both_ways(zmq_contexts, hwm, expected):
    broker = LoadBalancingBroker.from_endpoints(
        "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", context=zmq_contexts.sync, hwm=hwm
    )
    try:
        for socket in (broker._frontend, broker._backend):
            assert (socket.sndhwm, socket.rcvhwm) == (expected, expected)
    finally:
        broker.close(linger_ms=0)


@pytest.mark.parametrize("hwm", [-1, 2**31])
def test_an_hwm_that_is_not_a_c_int_is_a_value_error(zmq_contexts, hwm):
    with pytest.raises(ValueError, match="hwm must be from 0 to 2\\*\\*31 - 1"):
        LoadBalancingBroker.from_endpoints(
            "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", context=zmq_contexts.sync, hwm=hwm
        )


def test_sockets_must_be_routers(zmq_contexts):
    dealer = zmq_contexts.socket(zmq.DEALER, asyncio=False)
    router = zmq_contexts.socket(zmq.ROUTER, asyncio=False)
    with pytest.raises(ValueError, match="frontend must be a ROUTER"):
        LoadBalancingBroker(dealer, router)
    with pytest.raises(ValueError, match="max_replies"):
        LoadBalancingBroker(router, router, max_replies=0)


@pytest.mark.gen_test
async def test_a_request_whose_fd_edge_a_reply_send_consumed_is_still_served(
    zmq_contexts, make_broker, monkeypatch
):
    """The edge-triggered ZMQ_FD case, made deterministic.

    A request reaches the frontend while the broker is busy sending replies on
    that same socket. The next operation on the socket (a send, or reading
    EVENTS as here) processes its pending commands, so the fd signal that
    announced the request is consumed and the frontend stream would never wake
    for it. The broker must notice by itself (it reads EVENTS after each
    batch); here nothing else ever arrives to wake it.
    """
    broker = make_broker()
    crew = workers(zmq_contexts, broker, 2)
    for worker in crew:
        worker.serve()
    await ready_in_order(broker, crew)  # two ready: no 0 -> 1 transition below

    late_client = zmq_contexts.socket(zmq.REQ, asyncio=False)
    late_client.connect(broker.frontend_endpoint)
    frontend = broker._frontend
    real_send = broker_module.send_frames
    injected = []

    def send_then_let_a_request_land(socket: Any, frames: list[bytes]) -> None:
        real_send(socket, frames)
        if socket is frontend and not injected:  # just after the first reply
            injected.append(True)
            late_client.send(b"LATE")
            deadline = time.monotonic() + 5
            # Reading EVENTS, as a send does, consumes the fd signal.
            while not frontend.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                assert time.monotonic() < deadline, "the late request never arrived"
                time.sleep(0.001)

    monkeypatch.setattr(broker_module, "send_frames", send_then_let_a_request_land)
    first_client = client(zmq_contexts, broker)
    await first_client.send(b"FIRST")
    assert await receive(first_client) == [b"OK"]
    await until(lambda: late_client.getsockopt(zmq.EVENTS) & zmq.POLLIN)
    assert late_client.recv() == b"OK"


@pytest.mark.gen_test
async def test_a_reply_whose_fd_edge_a_request_send_consumed_is_still_routed(
    zmq_contexts, make_broker, monkeypatch
):
    """The same edge case the other way round: while the broker hands out a
    batch of requests, a request send on the backend swallows the signal of a
    reply that has just arrived there. No other worker message follows to wake
    the backend stream, so the broker must go back to the backend by itself."""
    broker = make_broker()
    busy = zmq_contexts.socket(zmq.REQ, asyncio=False)  # will hold request "one"
    idle = [zmq_contexts.socket(zmq.REQ, asyncio=False) for _ in range(2)]  # never answer
    for worker in (busy, *idle):
        worker.connect(broker.backend_endpoint)
    busy.send(b"READY")
    await until(lambda: broker.counters.workers_ready == 1)
    first = client(zmq_contexts, broker, zmq.DEALER)
    await first.send_multipart([b"", b"one"])
    await until(lambda: busy.getsockopt(zmq.EVENTS) & zmq.POLLIN)
    envelope = busy.recv_multipart()[:-1]
    for worker in idle:
        worker.send(b"READY")
    await until(lambda: broker.counters.workers_ready == 2)

    backend = broker._backend
    real_send = broker_module.send_frames
    backend_sends = []

    def send_then_let_a_reply_land(socket: Any, frames: list[bytes]) -> None:
        real_send(socket, frames)
        if socket is backend:
            backend_sends.append(frames)
            if len(backend_sends) == 2:  # inside the batch: "three" has just gone out
                busy.send_multipart([*envelope, b"reply-one"])
                deadline = time.monotonic() + 5
                while not backend.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # consumes the edge
                    assert time.monotonic() < deadline, "the reply never arrived"
                    time.sleep(0.001)

    monkeypatch.setattr(broker_module, "send_frames", send_then_let_a_reply_land)
    second = client(zmq_contexts, broker, zmq.DEALER)
    await second.send_multipart([b"", b"two"])
    await second.send_multipart([b"", b"three"])
    assert await receive(first) == [b"", b"reply-one"]
    assert len(backend_sends) == 2
