"""Test peers that run on the test's own loop: asyncio REQ/DEALER sockets.

They speak the guide's protocol exactly as real peers do; being coroutines,
they let a test drive every step and wait on outcomes, never on time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import zmq

DEFAULT_TIMEOUT = 5.0


async def until(condition: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.002)


async def receive(sock: Any, timeout: float = DEFAULT_TIMEOUT) -> list[bytes]:
    """One multipart message, or fail after ``timeout`` seconds."""
    frames: list[bytes] = await asyncio.wait_for(sock.recv_multipart(), timeout)
    return frames


async def nothing_arrives(sock: Any, window: float = 0.2) -> bool:
    """True if no message arrives on ``sock`` during ``window`` seconds.

    Used only to check a *negative* (a worker that must not be given work);
    every positive outcome is awaited directly.
    """
    return not await sock.poll(int(window * 1000))


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Return address (everything before the first empty frame) and body."""
    at = frames.index(b"")
    return frames[:at], frames[at + 1 :]


class Worker:
    """A REQ worker on the loop. ``serve()`` answers every request by itself."""

    def __init__(self, contexts: Any, endpoint: str, identity: bytes, token: bytes = b"READY"):
        self.identity = identity
        self.socket = contexts.socket(zmq.REQ)
        self.socket.identity = identity
        self.socket.connect(endpoint)
        self.token = token
        self.requests: list[list[bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def ready(self) -> None:
        await self.socket.send(self.token)

    async def take(self) -> tuple[list[bytes], list[bytes]]:
        """Receive one request: (return address, body)."""
        frames = await receive(self.socket)
        self.requests.append(frames)
        return split_envelope(frames)

    async def answer(self, envelope: list[bytes], *body: bytes) -> None:
        await self.socket.send_multipart([*envelope, b"", *body])

    def serve(self, reply: Callable[[list[bytes]], list[bytes]] = lambda body: [b"OK"]) -> None:
        """Answer every request in the background until the test ends."""

        async def loop() -> None:
            while True:  # no timeout: it serves until cancelled at teardown
                frames = await self.socket.recv_multipart()
                self.requests.append(frames)
                envelope, body = split_envelope(frames)
                await self.answer(envelope, *reply(body))

        self._task = asyncio.ensure_future(loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def echo(body: list[bytes]) -> list[bytes]:
    """A worker reply that sends the request's body back."""
    return body
