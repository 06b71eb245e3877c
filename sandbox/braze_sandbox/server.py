"""Running the sandbox: our HTTP server on a socket we bind, in a thread, a subprocess or the CLI.

`start_sandbox` returns a `SandboxHandle` once the server accepts connections. In-thread is the
default (fast to start, for tests); `isolated=True` runs it in its own process so it never shares
a GIL with the client under test (benchmarks). Either way the handle's read-back helpers go
through the `/_sandbox/` HTTP hooks, so both modes behave the same.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from braze_sandbox.app import SandboxApp
from braze_sandbox.config import SandboxConfig
from braze_sandbox.httpserver import HttpServer

READY_PREFIX = "sandbox listening on "
log = logging.getLogger("braze_migrate.sandbox")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(config: SandboxConfig) -> tuple[SandboxApp, HttpServer]:
    """A new SandboxApp and the HTTP server that will serve it."""
    app = SandboxApp(config)
    server = HttpServer(
        app.handle,
        lambda: app.config.max_body_bytes,
        lambda: log.exception("sandbox handler failed (request not logged)"),
    )
    return app, server


async def run(
    app: SandboxApp,
    server: HttpServer,
    sock: socket.socket,
    on_ready: Callable[[], None],
    own_process: bool = False,
) -> None:
    """Serve until `server.stop()`, flushing persistence periodically and at the end.

    In a process of its own (`own_process`), the stored profiles are moved out of the garbage
    collector's sight every second (`gc.freeze`) and collections are made rarer: a sandbox holds
    millions of long-lived containers that scanning again and again would cost more than the
    requests themselves. Never done in-thread, where the process belongs to the caller.
    """
    loop = asyncio.get_running_loop()

    def flush() -> None:
        app.flush()
        if not server.stopping:
            loop.call_later(app.config.flush_interval_s, flush)

    def freeze() -> None:
        gc.freeze()
        if not server.stopping:
            loop.call_later(1.0, freeze)

    if app.journal is not None:
        loop.call_later(app.config.flush_interval_s, flush)
    if own_process:
        gc.set_threshold(50_000, 20, 20)
        freeze()
    await server.serve(sock, on_ready, on_stop=app.close)


class SandboxHandle:
    """A running sandbox: its URL, read-back helpers, and `stop()` (also a context manager).

    `pid` is the process serving it (this one in-thread, the child when isolated).
    """

    def __init__(self, url: str, stopper: Callable[[], None], pid: int | None = None) -> None:
        self.url = url
        self.pid = pid if pid is not None else os.getpid()
        self._stopper = stopper
        self._stopped = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SandboxHandle({self.url!r})"

    def stop(self) -> None:
        """Stop the server (flushing persistence); safe to call twice."""
        if not self._stopped:
            self._stopped = True
            self._stopper()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise ValueError(f"sandbox hook {method} {path} answered {error.code}") from None

    def profiles(self) -> dict[str, dict]:
        """Every stored profile by key: external_id, `alias:LABEL:NAME` or `braze_id:ID`."""
        return self._call("GET", "/_sandbox/profiles")

    def profile(self, external_id: str) -> dict | None:
        """One profile by external_id, or None."""
        return self._call("GET", "/_sandbox/users/" + urllib.request.quote(external_id, safe=""))

    def stats(self) -> dict:
        """Counters: requests, requests_by_status, throttled, data_points, objects, faults, ..."""
        return self._call("GET", "/_sandbox/stats")

    def state(self) -> dict:
        """Profiles, stats and settings in one document."""
        return self._call("GET", "/_sandbox/state")

    def reset(self) -> None:
        """Forget profiles and counters; restart rate windows and the fault sequence."""
        self._call("POST", "/_sandbox/reset")

    def set_faults(self, **rates: Any) -> dict:
        """Change fault settings at run time: fail_rate, applied_then_fail_rate, reset_rate,
        storm_rate, latency_ms, seed."""
        return self.configure(**rates)

    def configure(self, **settings: Any) -> dict:
        """Change any SandboxConfig setting but the key and the database while running."""
        return self._call("PATCH", "/_sandbox/config", settings)

    def patch_user(self, external_id: str, create: bool = False, **changes: Any) -> dict | None:
        """Alter a stored profile (verification tests): fields, custom_attributes, tokens, occurrences."""
        query = "?create=1" if create else ""
        return self._call(
            "PATCH", "/_sandbox/users/" + urllib.request.quote(external_id, safe="") + query, changes
        )

    def delete_user(self, external_id: str) -> bool:
        """Remove a stored profile; False when it did not exist."""
        return (
            self._call("DELETE", "/_sandbox/users/" + urllib.request.quote(external_id, safe="")) is not None
        )


def _start_thread(config: SandboxConfig, host: str, port: int) -> SandboxHandle:
    ready = threading.Event()
    app, server = make_server(config)
    sock = bind(host, port)
    thread = threading.Thread(
        target=asyncio.run, args=(run(app, server, sock, ready.set),), name="braze-sandbox", daemon=True
    )
    thread.start()
    while not ready.wait(0.05):
        if not thread.is_alive():
            sock.close()
            raise RuntimeError("the sandbox server failed to start")

    def stop() -> None:
        server.stop()
        thread.join(timeout=15)
        sock.close()

    return SandboxHandle(url_of(sock), stop)


def cli_arguments(config: SandboxConfig) -> list[str]:
    """Command-line flags that recreate `config` (the key travels in the environment instead)."""
    settings = config.public_dict()
    settings.pop("db_path")
    args = ["--settings", json.dumps(settings)]
    if config.db_path:
        args += ["--db", config.db_path]
    return args


def _start_process(config: SandboxConfig, host: str, port: int) -> SandboxHandle:
    root = str(Path(__file__).resolve().parents[3])
    env = {
        **os.environ,
        "BRAZE_API_KEY": config.api_key,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "braze_sandbox",
        "--host",
        host,
        "--port",
        str(port),
        *cli_arguments(config),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith(READY_PREFIX):
        process.kill()
        process.wait()
        raise RuntimeError("the sandbox process failed to start")

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

    return SandboxHandle(line[len(READY_PREFIX) :].strip(), stop, pid=process.pid)


def start_sandbox(
    config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0, isolated: bool = False
) -> SandboxHandle:
    """Start a sandbox on loopback and return once it accepts connections."""
    config = config or SandboxConfig()
    if isolated:
        return _start_process(config, host, port)
    return _start_thread(config, host, port)
