"""AsyncClient: many requests in flight over one DEALER stream, on the test's loop."""

from __future__ import annotations

import asyncio

import pytest

from lb_ioloop.async_client import AsyncClient, RequestTimeout

from .peers import until
from .test_broker import ready_in_order, workers


@pytest.mark.gen_test
async def test_many_requests_in_flight_each_get_their_own_reply(zmq_contexts, make_broker):
    broker = make_broker()
    crew = workers(zmq_contexts, broker, 3)
    for worker in crew:
        worker.serve(lambda body: [b"re:", *body])
    await ready_in_order(broker, crew)
    client = AsyncClient([broker.frontend_endpoint], context=zmq_contexts.sync)
    try:
        replies = await asyncio.gather(
            *(client.request([b"%d" % n, b"", b"tail"]) for n in range(200))
        )
    finally:
        client.close()
    assert replies == [[b"re:", b"%d" % n, b"", b"tail"] for n in range(200)]
    assert client.in_flight == 0


@pytest.mark.gen_test
async def test_a_request_times_out_and_its_late_reply_is_dropped(zmq_contexts, make_broker):
    broker = make_broker()
    (worker,) = workers(zmq_contexts, broker, 1)
    await worker.ready()
    client = AsyncClient([broker.frontend_endpoint], context=zmq_contexts.sync)
    try:
        with pytest.raises(RequestTimeout, match="no reply within 0.05s"):
            await client.request([b"slow"], timeout=0.05)
        envelope, _ = await worker.take()
        await worker.answer(envelope, b"too late")
        worker.serve()
        assert await client.request([b"next"]) == [b"OK"]
    finally:
        client.close()


@pytest.mark.gen_test
async def test_close_fails_waiting_requests(zmq_contexts, make_broker):
    broker = make_broker()  # no worker: nothing will be answered
    client = AsyncClient([broker.frontend_endpoint], context=zmq_contexts.sync)
    pending = asyncio.ensure_future(client.request([b"HELLO"]))
    await until(lambda: client.in_flight == 1)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await pending
    with pytest.raises(RuntimeError, match="closed"):
        await client.request([b"again"])
