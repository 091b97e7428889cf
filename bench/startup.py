"""Start-up time of `probo serve` on the embedded default, to `/readyz` = 200.

First start: a new data directory (initdb, Redis, schema). Restart: the same directory.

    python -m bench.startup
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

READY_TIMEOUT_S = 120
RUNS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _time_to_ready(data_dir: Path) -> float:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBO_")}
    env.update(
        PROBO_DATA_DIR=str(data_dir),
        PROBO_PORT=str(port),
        PROBO_LOG_LEVEL="WARNING",
        PROBO_DEMO="false",
    )
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "probo", "serve"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = started + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError("serve did not become ready")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def main() -> None:
    first, again = [], []
    for _ in range(RUNS):
        # Under the project's .probo/, like `make run` (see tests/conftest.py server_dir).
        data_dir = Path(".probo") / "bench-startup" / uuid.uuid4().hex[:8]
        data_dir.mkdir(parents=True)
        try:
            first.append(_time_to_ready(data_dir))
            again.append(_time_to_ready(data_dir))
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"probo serve to /readyz=200 on embedded servers, {RUNS} runs")
    print(f"  first start (new data dir): min {min(first):.2f} s, max {max(first):.2f} s")
    print(f"  restart (same data dir):    min {min(again):.2f} s, max {max(again):.2f} s")


if __name__ == "__main__":
    main()
