"""Start ``inverity serve`` in a subprocess on loopback and wait until it answers (tests and benchmarks)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["free_port", "start_server", "stop_server"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_server(store: Path, *extra: str, token: str, host: str = "127.0.0.1",
                 wait_s: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``inverity serve`` with ``extra`` flags; return the process and its base URL once /healthz answers."""
    import httpx

    port = free_port(host)
    cmd = [sys.executable, "-c", "import sys; from inverity.cli import main; sys.exit(main(sys.argv[1:]))",
           "serve", "--host", host, "--port", str(port), "--store", str(store), "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, env=dict(os.environ, INVERITY_TOKEN=token), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    base = f"http://{host}:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {err}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not answer /healthz within {wait_s:.0f} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
