"""The package and the examples pass mypy (strict) and ruff, as the docs promise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .processes import ROOT


@pytest.mark.parametrize(
    "command",
    [
        ["mypy", "lb_ioloop", "examples"],
        ["ruff", "check", "lb_ioloop", "tests", "examples"],
        ["ruff", "format", "--check", "lb_ioloop", "tests", "examples"],
    ],
    ids=["mypy", "ruff-check", "ruff-format"],
)
def test_static_check(command):
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
