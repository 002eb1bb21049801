"""Fixtures for the chart tests: the built binary, moto, a node to run pods on.

Like `ember_tests::skip_or_fail_missing_tool`, a missing tool skips a test on a
developer's machine and fails it when CI is set: a skipped test proves nothing.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def in_ci():
    return os.environ.get("CI", "") not in ("", "false", "0")


def skip_or_fail_missing_tool(what, how):
    message = f"{what} is not available; install it with: {how}"
    if in_ci():
        pytest.fail(f"{message} (CI is set, so this test fails instead of skipping)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def ember_binary():
    path = Path(os.environ.get("EMBER_BINARY", TARGET / "debug" / "ember"))
    if not path.is_file():
        skip_or_fail_missing_tool(f"the ember binary ({path})", "cargo build --bin ember")
    return path


@pytest.fixture(scope="session")
def moto_server():
    path = os.environ.get("EMBER_MOTO_SERVER") or str(TARGET / "moto-venv" / "bin" / "moto_server")
    if not Path(path).is_file():
        skip_or_fail_missing_tool("moto_server (moto[server] from PyPI)", "bash scripts/test.sh")
    return path


@pytest.fixture(scope="session")
def netns_capable():
    if os.geteuid() != 0 or not shutil.which("ip"):
        skip_or_fail_missing_tool("root and iproute2 (ip netns)", "run as root with iproute2 installed")
