"""The ready-worker queue, without sockets or a loop."""

from __future__ import annotations

import pytest

from lb_ioloop.pool import ReadyWorkers


def test_least_recently_used_worker_comes_first():
    ready = ReadyWorkers()
    for identity in (b"a", b"b", b"c"):
        ready.add(identity)
    assert ready.pop() == b"a"
    ready.add(b"a")  # a served, then ready again: to the back
    assert list(ready) == [b"b", b"c", b"a"]


def test_an_identity_is_held_at_most_once():
    ready = ReadyWorkers()
    assert ready.add(b"a") is True
    assert ready.add(b"a") is False
    assert len(ready) == 1


def test_discard_removes_from_the_middle():
    ready = ReadyWorkers()
    for identity in (b"a", b"b", b"c"):
        ready.add(identity)
    assert ready.discard(b"b") is True
    assert ready.discard(b"b") is False
    assert list(ready) == [b"a", b"c"]


def test_pop_from_empty_raises_and_truthiness_follows_size():
    ready = ReadyWorkers()
    assert not ready
    with pytest.raises(IndexError):
        ready.pop()
    ready.add(b"a")
    assert ready and b"a" in ready
    assert repr(ready) == "<ReadyWorkers [b'a']>"
