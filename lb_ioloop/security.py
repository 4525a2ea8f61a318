"""CURVE security: key files, socket options, and the ZAP authenticator.

ZeroMQ's CURVE encrypts a connection and authenticates its server; with a
ZAP handler (here pyzmq's :class:`AsyncioAuthenticator`, on the running loop)
the server also checks each client's public key against a folder of
authorised keys. A peer whose key is not there fails the handshake, so not
one of its messages reaches the broker.

Key files are the ZeroMQ certificate format that :func:`zmq.auth.create_certificates`
writes: ``NAME.key`` holds the public key (give it out), ``NAME.key_secret``
holds both keys (keep it private).
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator

__all__ = [
    "KeyFileError",
    "apply_curve_client",
    "apply_curve_server",
    "generate_key_pairs",
    "load_public_key",
    "load_secret_key",
    "start_authenticator",
]


class KeyFileError(OSError):
    """A key file or folder is missing, unreadable, or not what was asked for."""


def _load(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise KeyFileError(f"cannot read key file {str(path)!r}: {reason}") from None


def load_secret_key(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """``(public, secret)`` from a ``.key_secret`` file."""
    public, secret = _load(path)
    if not secret:
        raise KeyFileError(
            f"key file {str(path)!r} holds no secret key (give the .key_secret file)"
        )
    return public, secret


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """The public key from a ``.key`` (or ``.key_secret``) file."""
    public, _ = _load(path)
    return public


def apply_curve_server(socket: zmq.Socket[bytes], public: bytes, secret: bytes) -> None:
    """Make ``socket`` a CURVE server. Call before it binds."""
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def apply_curve_client(
    socket: zmq.Socket[bytes],
    server_public: bytes,
    own_keys: tuple[bytes, bytes] | None = None,
) -> None:
    """Make ``socket`` a CURVE client of the server whose public key is given.

    ``own_keys`` is the client's ``(public, secret)``; None makes a fresh
    pair, which is enough when the server lets any key in.
    Call before the socket connects.
    """
    public, secret = own_keys if own_keys is not None else zmq.curve_keypair()
    socket.curve_serverkey = server_public
    socket.curve_publickey = public
    socket.curve_secretkey = secret


def start_authenticator(
    context: zmq.Context[zmq.Socket[bytes]], authorized_keys: str | os.PathLike[str]
) -> AsyncioAuthenticator:
    """Start ZAP on the running loop: only keys in ``authorized_keys`` get in.

    Call it from a coroutine on the loop that runs the broker, before the
    broker's sockets bind; stop it after they close.
    """
    folder = Path(authorized_keys)
    if not folder.is_dir():
        raise KeyFileError(f"authorized keys folder {str(folder)!r} does not exist")
    authenticator = AsyncioAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(folder))
    return authenticator


def generate_key_pairs(folder: str | os.PathLike[str], names: list[str]) -> list[Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` in ``folder`` for each name.

    Refuses to overwrite an existing key file. Returns the files written.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in names:
        existing = [
            p for p in (target / f"{name}.key", target / f"{name}.key_secret") if p.exists()
        ]
        if existing:
            raise KeyFileError(f"{str(existing[0])!r} exists; not overwriting a key")
        public_file, secret_file = zmq.auth.create_certificates(target, name)
        os.chmod(secret_file, 0o600)
        written += [Path(public_file), Path(secret_file)]
    return written
