"""`probo serve` as a real process on the embedded default: ready, serving, restartable."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30


def _clean_env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBO_")}
    env.update(
        PROBO_DATA_DIR=str(data_dir),
        PROBO_PORT=str(port),
        PROBO_COOKIE_SECURE="false",
        PROBO_OTP_RESEND_COOLDOWN_S="0",
        PROBO_LOG_LEVEL="WARNING",
        PROBO_DEMO="false",
    )
    return env


def _start(data_dir: Path, port: int) -> tuple[subprocess.Popen, float]:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "probo", "serve"],
        env=_clean_env(data_dir, port),
        stdout=subprocess.DEVNULL,
        stderr=open(data_dir.parent / "serve.log", "ab"),
    )
    deadline = started + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"serve exited with {process.returncode}: {(data_dir.parent / 'serve.log').read_text()[-2000:]}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process, time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("serve did not become ready")


def _stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(STOP_TIMEOUT_S)


def _raw_status(port: int, head: bytes) -> int:
    """The status the server answers `head` with, sent over a bare socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        return int(sock.makefile("rb").readline().split()[1])


def _login(base: str, outbox: Path, phone: str) -> str:
    assert httpx.post(f"{base}/api/v1/auth/otp", json={"phone": phone}).status_code == 202
    otp = [
        json.loads(line)
        for line in outbox.read_text().splitlines()
        if json.loads(line)["to"] == phone
    ][-1]["otp"]
    response = httpx.post(f"{base}/api/v1/auth/verify", json={"phone": phone, "otp": otp})
    assert response.status_code == 200, response.text
    return response.json()["token"]


@pytest.mark.slow
def test_serve_on_embedded_servers_is_ready_and_keeps_data_across_restarts(
    server_dir: Path,
) -> None:
    data_dir = server_dir / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    phone = "+919876500001"

    process, first_start_s = _start(data_dir, port)
    try:
        ready = httpx.get(f"{base}/readyz").json()
        assert ready == {
            "status": "ready",
            "postgres": True,
            "redis": True,
            "engine": True,
            "ledger": True,
        }
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert "probo_http_requests_total" in httpx.get(f"{base}/metrics").text
        assert httpx.get(f"{base}/schema/openapi.json").json()["info"]["title"] == "Probo"
        # It serves through probo's HTTP protocol, which bounds request heads.
        huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"h" * 100_000 + b"\r\n\r\n"
        assert _raw_status(port, huge) == 431
        token = _login(base, data_dir / "sms-outbox.jsonl", phone)
        headers = {"Authorization": f"Bearer {token}"}
        deposit = httpx.post(
            f"{base}/api/v1/wallet/deposits",
            json={"amount": 2500, "idempotency_key": "k1"},
            headers=headers,
        )
        assert deposit.status_code == 201
    finally:
        assert _stop(process) == 0
    # The servers stopped with it: the Postgres socket and Redis socket are gone.
    assert not list((data_dir / "postgres").glob(".s.PGSQL.*"))
    assert not (data_dir / "redis.sock").exists()

    process, second_start_s = _start(data_dir, port)
    try:
        # Same data: the session is still valid and the money is still there.
        wallet = httpx.get(f"{base}/api/v1/wallet", headers=headers).json()
        assert wallet["balance"] == 1500 + 2500
        # Logout revocations survive a restart (Redis keeps them on disk).
        assert httpx.post(f"{base}/api/v1/auth/logout", headers=headers).status_code == 200
    finally:
        assert _stop(process) == 0
    process, _ = _start(data_dir, port)
    try:
        assert httpx.get(f"{base}/api/v1/me", headers=headers).status_code == 401
    finally:
        assert _stop(process) == 0
    print(f"first start to ready {first_start_s:.2f} s; restart to ready {second_start_s:.2f} s")


def test_prod_refuses_to_start_without_a_secret(server_dir: Path) -> None:
    env = _clean_env(server_dir, free_port()) | {"PROBO_ENV": "prod", "PROBO_COOKIE_SECURE": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "probo", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PROBO_JWT_SECRET" in result.stderr


def test_prod_refuses_insecure_cookies(server_dir: Path) -> None:
    env = _clean_env(server_dir, free_port()) | {"PROBO_ENV": "prod", "PROBO_JWT_SECRET": "s" * 40}
    result = subprocess.run(
        [sys.executable, "-m", "probo", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PROBO_COOKIE_SECURE" in result.stderr


def test_prod_refuses_to_start_with_the_simulated_payments_provider(server_dir: Path) -> None:
    env = _clean_env(server_dir, free_port()) | {
        "PROBO_ENV": "prod",
        "PROBO_JWT_SECRET": "s" * 40,
        "PROBO_PAYMENTS_PROVIDER": "simulated",
    }
    result = subprocess.run(
        [sys.executable, "-m", "probo", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "PROBO_PAYMENTS_PROVIDER" in result.stderr
