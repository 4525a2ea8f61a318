"""The envelope rules, without sockets or a loop."""

from __future__ import annotations

import pytest

from lb_ioloop.protocol import MalformedMessage, check_request, describe_shape, reply_to_client


@pytest.mark.parametrize(
    "frames",
    [
        [b"client", b"", b"HELLO"],
        [b"hop", b"client", b"", b"HELLO"],  # a client behind another ROUTER
        [b"client", b"", b"part", b"", b"part"],  # a body with an empty frame
        [b"client", b"", b""],  # an empty body frame is still a body
    ],
)
def test_well_formed_requests_pass(frames):
    check_request(frames)


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b"client", b"HELLO"], "no delimiter"),
        ([b"client", b""], "nothing after the delimiter"),
        ([b"", b"HELLO"], "empty return address"),
    ],
)
def test_malformed_requests_are_named(frames, reason):
    with pytest.raises(MalformedMessage, match=reason):
        check_request(frames)


@pytest.mark.parametrize("token", [b"READY", b"\x01"])
def test_ready_is_recognised_by_shape(token):
    assert reply_to_client([b"worker", b"", token]) is None


def test_a_reply_to_a_client_named_ready_is_a_reply():
    frames = [b"worker", b"", b"READY", b"", b"OK"]
    assert reply_to_client(frames) == [b"READY", b"", b"OK"]


def test_a_reply_keeps_every_hop_and_every_body_frame():
    frames = [b"worker", b"", b"hop", b"client", b"", b"a", b"", b"c"]
    assert reply_to_client(frames) == [b"hop", b"client", b"", b"a", b"", b"c"]


@pytest.mark.parametrize(
    ("frames", "reason", "worker_is_waiting"),
    [
        ([b"worker", b"junk"], "no delimiter", False),
        ([b"worker"], "no delimiter", False),
        ([b"worker", b""], "nothing after the delimiter", False),
        ([b"worker", b"", b"", b"OK"], "empty return address", True),
        ([b"worker", b"", b"OK"], "no return address", True),
        ([b"worker", b"", b"client", b""], "nothing after the reply", True),
    ],
)
def test_malformed_worker_messages_are_named(frames, reason, worker_is_waiting):
    with pytest.raises(MalformedMessage, match=reason) as raised:
        reply_to_client(frames)
    assert raised.value.worker_is_waiting is worker_is_waiting


def test_shapes_show_sizes_not_contents():
    assert describe_shape([b"abc", b"", b"\xff" * 10]) == "3 frames [3B, 0B, 10B]"
    assert describe_shape([b"x"] * 10, limit=2) == "10 frames [1B, 1B, +8 more]"
    assert describe_shape([]) == "0 frames []"
