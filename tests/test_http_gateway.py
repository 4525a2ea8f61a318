"""examples/http_gateway.py with real HTTP requests and worker processes."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

from .processes import ROOT, TIMEOUT, read_line
from .test_cli_peers import worker_process


@contextmanager
def gateway(*extra: str) -> Iterator[tuple[str, str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "http_gateway.py"),
            "--http-port",
            "0",
            "--backend",
            "tcp://127.0.0.1:*",
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        words = read_line(process.stderr).split()
        assert words[0] == "http_gateway:", words
        yield words[1], words[3]
        process.terminate()
        _, err = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=TIMEOUT)


def post(url: str, body: bytes) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, data=body, timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_each_post_is_answered_by_a_worker():
    with ExitStack() as stack:
        url, backend = stack.enter_context(gateway())
        for _ in range(2):
            stack.enter_context(worker_process(backend, "--echo"))
        bodies = [b"request-%d" % n for n in range(40)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda body: post(url, body), bodies))
    assert answers == [(200, body) for body in bodies]


def test_no_worker_means_504_after_the_timeout():
    with gateway("--timeout", "0.3") as (url, _):
        status, _ = post(url, b"anyone?")
    assert status == 504
