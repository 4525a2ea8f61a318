"""CURVE between real processes: authorised keys get through, others get nothing."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .processes import TIMEOUT, broker_process, lb_ioloop
from .test_cli_peers import run_client, worker_process


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        lb_ioloop(*args), capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
    )


@pytest.fixture
def keys(tmp_path):
    """Key pairs for broker, worker, client and an outsider; only worker and client authorised."""
    result = cli("keygen", str(tmp_path / "keys"), "broker", "worker", "client", "outsider")
    assert result.returncode == 0, result.stderr
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    for name in ("worker", "client"):
        shutil.copy(tmp_path / "keys" / f"{name}.key", authorized)
    return tmp_path / "keys", authorized


def test_keygen_writes_pairs_and_refuses_to_overwrite(keys):
    folder, _ = keys
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{n}.{ext}"
        for n in ("broker", "worker", "client", "outsider")
        for ext in ("key", "key_secret")
    )
    assert (folder / "broker.key_secret").stat().st_mode & 0o077 == 0
    again = cli("keygen", str(folder), "broker")
    assert again.returncode == 2
    assert again.stderr.splitlines() == [
        f"lb-ioloop keygen: error: '{folder / 'broker.key'}' exists; not overwriting a key"
    ]


def curve_broker(keys, *extra: str):
    """A broker with the test's secret key and authorised keys folder."""
    folder, authorized = keys
    return broker_process(
        "--curve-secret-key",
        str(folder / "broker.key_secret"),
        "--curve-authorized-keys",
        str(authorized),
        *extra,
    )


def test_authorised_peers_get_through_and_others_get_nothing(keys):
    folder, _ = keys
    server = ["--curve-server-key", str(folder / "broker.key")]
    with (
        curve_broker(keys) as broker,
        worker_process(
            broker.backend, *server, "--curve-secret-key", str(folder / "worker.key_secret")
        ),
    ):
        allowed = run_client(
            "--connect",
            broker.frontend,
            *server,
            "--curve-secret-key",
            str(folder / "client.key_secret"),
            "--requests",
            "2",
        )
        outsider = run_client(
            "--connect",
            broker.frontend,
            *server,
            "--curve-secret-key",
            str(folder / "outsider.key_secret"),
            "--timeout",
            "0.5",
        )
        fresh_key = run_client("--connect", broker.frontend, *server, "--timeout", "0.5")
        plain = run_client("--connect", broker.frontend, "--timeout", "0.5")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.splitlines() == ["Client: OK"] * 2
    for denied in (outsider, fresh_key, plain):
        assert denied.returncode == 1
        assert "no reply within 0.5s" in denied.stderr


def test_an_unauthorised_worker_is_never_given_work(keys):
    folder, _ = keys
    server = ["--curve-server-key", str(folder / "broker.key")]
    with (
        curve_broker(keys, "--curve-sockets", "backend") as broker,
        worker_process(
            broker.backend, *server, "--curve-secret-key", str(folder / "outsider.key_secret")
        ),
    ):
        # The frontend is plain here; the outsider worker cannot say READY.
        result = run_client("--connect", broker.frontend, "--timeout", "0.5")
    assert result.returncode == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "broker",
                "--frontend",
                "tcp://127.0.0.1:*",
                "--backend",
                "tcp://127.0.0.1:*",
                "--curve-secret-key",
                "/nonexistent/broker.key_secret",
            ],
            "cannot read key file",
        ),
        (
            [
                "broker",
                "--frontend",
                "tcp://127.0.0.1:*",
                "--backend",
                "tcp://127.0.0.1:*",
                "--curve-authorized-keys",
                "/tmp",
            ],
            "needs --curve-secret-key",
        ),
        (
            [
                "client",
                "--connect",
                "tcp://127.0.0.1:1",
                "--curve-server-key",
                "/nonexistent/broker.key",
            ],
            "cannot read key file",
        ),
        (
            [
                "worker",
                "--connect",
                "tcp://127.0.0.1:1",
                "--curve-secret-key",
                "/nonexistent/w.key_secret",
            ],
            "needs --curve-server-key",
        ),
    ],
)
def test_key_mistakes_are_one_line_and_exit_2(args, message):
    result = cli(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_public_key_file_is_not_a_secret_key(keys):
    folder, authorized = keys
    result = cli(
        "broker",
        "--frontend",
        "tcp://127.0.0.1:*",
        "--backend",
        "tcp://127.0.0.1:*",
        "--curve-secret-key",
        str(folder / "broker.key"),
    )
    assert result.returncode == 2
    assert "holds no secret key" in result.stderr
