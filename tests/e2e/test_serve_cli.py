"""`durably serve` as a user runs it: a subprocess with free ports and a temp data dir."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def durably(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "durably", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=60,
    )


def spawn(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "durably", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
    )


def read_line_until(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """Read stdout until a line containing `needle` (fails if the process exits first)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.2):
                if proc.poll() is not None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if needle in line:
                return line
    finally:
        sel.close()
    err = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
    raise AssertionError(f"no line with {needle!r}; stdout={seen!r} stderr={err!r}")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def assert_one_clear_line(stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("durably: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture
def server(tmp_path: Path, ports: tuple[int, int]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    ingress, admin = ports
    proc = spawn(
        "--bind", "127.0.0.1",
        "--ingress-port", str(ingress),
        "--admin-port", str(admin),
        "--data-dir", str(tmp_path / "data"),
    )
    try:
        line = read_line_until(proc, "ready", START_TIMEOUT)
        yield proc, line
    finally:
        stop(proc)


def test_help_lists_the_main_options() -> None:
    result = durably("serve", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--ingress-port", "--admin-port", "--bind", "--data-dir"):
        assert option in result.stdout


def test_starts_prints_ready_and_serves(
    server: tuple[subprocess.Popen[str], str], ports: tuple[int, int], tmp_path: Path
) -> None:
    _, line = server
    ingress, admin = ports
    assert f"http://127.0.0.1:{ingress}" in line
    assert f"http://127.0.0.1:{admin}" in line
    assert str(tmp_path / "data") in line
    assert httpx.get(f"http://127.0.0.1:{ingress}/restate/health", timeout=5).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{admin}/health", timeout=5).status_code == 200
    assert (tmp_path / "data" / "durably.sqlite3").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_it_promptly_with_exit_0(
    server: tuple[subprocess.Popen[str], str], sig: signal.Signals
) -> None:
    proc, _ = server
    started = time.monotonic()
    proc.send_signal(sig)
    assert proc.wait(timeout=STOP_TIMEOUT) == 0
    assert time.monotonic() - started < 5.0
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()


@pytest.mark.parametrize("which", ["ingress", "admin"])
def test_port_in_use_is_one_clear_line(tmp_path: Path, which: str) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        ingress = busy if which == "ingress" else free_port()
        admin = busy if which == "admin" else free_port()
        result = durably(
            "serve",
            "--ingress-port", str(ingress),
            "--admin-port", str(admin),
            "--data-dir", str(tmp_path / "data"),
        )
    assert result.returncode != 0
    assert_one_clear_line(result.stderr, str(busy), "in use", which)
    assert "ready" not in result.stdout


def test_unwritable_data_dir_is_one_clear_line(tmp_path: Path, ports: tuple[int, int]) -> None:
    # tests run as root, which ignores permission bits: put the data dir under a regular file
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    ingress, admin = ports
    started = time.monotonic()
    result = durably(
        "serve",
        "--ingress-port", str(ingress),
        "--admin-port", str(admin),
        "--data-dir", str(blocker / "data"),
    )
    assert result.returncode != 0
    assert_one_clear_line(result.stderr, str(blocker / "data"), "not writable")
    assert "ready" not in result.stdout
    assert time.monotonic() - started < 20


def test_ingress_port_from_the_environment(tmp_path: Path) -> None:
    ingress, admin = free_port(), free_port()
    proc = spawn(
        "--admin-port", str(admin),
        "--data-dir", str(tmp_path / "data"),
        DURABLY_INGRESS_PORT=str(ingress),
    )
    try:
        line = read_line_until(proc, "ready", START_TIMEOUT)
        assert f"http://127.0.0.1:{ingress}" in line
        assert httpx.get(f"http://127.0.0.1:{ingress}/restate/health", timeout=5).status_code == 200
    finally:
        stop(proc)


def test_flag_beats_the_environment(tmp_path: Path) -> None:
    ingress, admin = free_port(), free_port()
    proc = spawn(
        "--ingress-port", str(ingress),
        "--admin-port", str(admin),
        "--data-dir", str(tmp_path / "data"),
        DURABLY_INGRESS_PORT=str(free_port()),
    )
    try:
        line = read_line_until(proc, "ready", START_TIMEOUT)
        assert f"http://127.0.0.1:{ingress}" in line
    finally:
        stop(proc)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "10 parsecs"])
def test_bad_cleanup_interval_exits_2(tmp_path: Path, value: str) -> None:
    result = durably("serve", f"--cleanup-interval={value}", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--cleanup-interval" in result.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--sync", "sometimes"), ("--log-level", "loud"), ("--http1-max-connections", "-1")],
)
def test_other_bad_options_exit_2(tmp_path: Path, option: str, value: str) -> None:
    result = durably("serve", f"{option}={value}", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert option.lstrip("-").split("-")[0] in result.stderr
