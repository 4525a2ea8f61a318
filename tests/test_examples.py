"""The example and ``lb-ioloop demo``, run as a user runs them."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from .processes import ROOT, TIMEOUT, isolated_env, lb_ioloop


def check_output(stdout: str, clients: int = 10) -> None:
    lines = stdout.splitlines()
    assert Counter(lines) == {"Client: OK": clients, "Worker: HELLO": clients}, stdout


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, str(ROOT / "examples" / "lbbroker.py")],
        lb_ioloop("demo", "--transport", "ipc"),
        lb_ioloop("demo", "--transport", "tcp"),
        lb_ioloop("demo", "--transport", "inproc"),
    ],
    ids=["example-script", "demo-ipc", "demo-tcp", "demo-inproc"],
)
def test_prints_every_line_exits_0_and_leaves_nothing(tmp_path, command):
    env, work, tmp = isolated_env(tmp_path)
    result = subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    check_output(result.stdout)
    assert list(work.iterdir()) == [] and list(tmp.iterdir()) == []


def test_demo_console_script_with_other_counts(tmp_path):
    env, work, _ = isolated_env(tmp_path)
    script = Path(sys.executable).parent / "lb-ioloop"
    result = subprocess.run(
        [str(script), "demo", "--clients", "25", "--workers", "4"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    check_output(result.stdout, clients=25)


def test_two_copies_run_at_once_in_one_folder(tmp_path):
    env, work, tmp = isolated_env(tmp_path)
    commands = [
        [sys.executable, str(ROOT / "examples" / "lbbroker.py")],
        lb_ioloop("demo"),
    ]
    processes = [
        subprocess.Popen(
            command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in commands
    ]
    for process in processes:
        out, err = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, err
        check_output(out)
    assert list(work.iterdir()) == [] and list(tmp.iterdir()) == []


def test_demo_whose_output_is_closed_says_so_and_does_not_hang(tmp_path):
    env, work, _ = isolated_env(tmp_path)
    process = subprocess.Popen(
        lb_ioloop("demo"),
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()  # like `lb-ioloop demo | head -0`
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 1
    assert err.splitlines() == [
        "lb-ioloop demo: error: could not write the output: [Errno 32] Broken pipe"
    ]


def test_inproc_demo_beyond_libzmqs_default_socket_limit(tmp_path):
    env, work, _ = isolated_env(tmp_path)
    result = subprocess.run(
        lb_ioloop("demo", "--transport", "inproc", "--clients", "1030", "--workers", "2"),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    check_output(result.stdout, clients=1030)


def test_demo_too_big_for_the_open_files_limit_is_one_line(tmp_path):
    env, work, _ = isolated_env(tmp_path)

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    result = subprocess.run(
        lb_ioloop("demo", "--transport", "tcp", "--clients", "100"),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=low_limit,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "lb-ioloop demo: error: 103 clients and workers over tcp need about 888 open files; "
        "the limit is 256 (see ulimit -n)"
    ]
    assert result.stdout == ""
