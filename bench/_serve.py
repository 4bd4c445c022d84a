"""Start `genforge serve` in a subprocess on a free local port, for the serving benchmarks."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx


def start_server(serve_args: list[str], threads: int) -> tuple[subprocess.Popen, str]:
    """(process, base URL) of `genforge serve SERVE_ARGS`, once /health answers; exits if it does not
    within two minutes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "genforge.cli", "serve", *serve_args, "--port", str(port),
                             "--device", "cpu"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"{url}/health").raise_for_status()
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.2)
