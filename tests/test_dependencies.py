"""Every third-party import of the product is declared in pyproject.toml (runtime: [project.dependencies];
the Dask flows: the `dask` extra), nothing declared goes unused, and a clean virtualenv without the dev
extras installs the package and runs `braze-migrate --help` and a `plan` of the bundled samples."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("braze_migrate", "flows", "transforms", "connectors")
DASK_ONLY = {"flows/parallel.py"}  # the Dask fan-out flows: `pip install 'braze-migrate[dask]'`
# Its own distribution (./sandbox), imported only by `braze-migrate sandbox`, which says how to install it.
OPTIONAL = {"braze-sandbox"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return {_name(r) for r in project["dependencies"]}, {_name(r) for r in extras.get("dask", [])}


def _imports(path: Path) -> set[str]:
    """Top-level names of the modules a file imports (lazy imports inside functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _third_party(names: set[str]) -> set[str]:
    """Distributions providing these top-level names (stdlib and our own packages left out)."""
    owners = packages_distributions()
    out = set()
    for name in names - set(sys.stdlib_module_names) - set(PRODUCT) - {"__future__"}:
        assert name in owners, f"{name} is imported but no installed distribution provides it"
        out |= {d.lower().replace("_", "-") for d in owners[name]}
    return out


def test_every_import_is_declared_and_every_declaration_is_used():
    runtime, dask = _declared()
    used_runtime, used_dask = set(), set()
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            found = _third_party(_imports(path))
            if str(path.relative_to(ROOT)) in DASK_ONLY:
                used_dask |= found - OPTIONAL
            else:
                used_runtime |= found - OPTIONAL
    assert used_runtime <= runtime, f"imported but not in [project.dependencies]: {sorted(used_runtime - runtime)}"
    assert used_dask <= runtime | dask, f"imported by the Dask flows, not declared: {sorted(used_dask - runtime - dask)}"
    # Declared but imported nowhere: only what our own code needs at run time without importing it by name.
    loaded_by_others = {"pyarrow", "httpx-aiohttp", "psycopg"}  # Polars' parquet/arrow I/O, the client transport
    unused = runtime - used_runtime - loaded_by_others
    assert not unused, f"declared but never imported: {sorted(unused)}"
    assert {"prefect-dask", "distributed"} <= dask and not ({"prefect-dask", "distributed"} & runtime)


def test_the_warehouse_drivers_named_by_a_url_are_declared():
    """connectors/sql.py imports a warehouse's driver by the name its URL scheme gives (DRIVERS): PostgreSQL's
    and DuckDB's are runtime dependencies, Snowflake's and BigQuery's the optional extras the message names."""
    from connectors.sql import DRIVERS

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    for module, extra in DRIVERS.values():
        dist = module.replace("_", "-")
        if extra is None:
            assert dist in runtime, dist
        else:
            assert {_name(r) for r in extras[extra]} == {dist}, extra


@pytest.mark.timeout(900)
def test_a_clean_virtualenv_without_dev_extras_runs_help_and_plans_the_samples(tmp_path):
    """`uv` (a dev dependency) builds the venv in seconds from its cache; pip would take minutes."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is a dev dependency: `make venv` installs it"
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    if "SSL_CERT_FILE" not in env and Path("/etc/ssl/certs/ca-certificates.crt").exists():
        env["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"  # the system's CAs, as pip uses here
    subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True, env=env, timeout=120)
    source = tmp_path / "src"  # a copy, so the build never writes into the checkout
    top_level = {".venv", ".git", "build", "state", ".demo-state", "tests", "bench", "sandbox", "data"}
    shutil.copytree(ROOT, source, ignore=lambda folder, names: [
        n for n in names if (Path(folder) == ROOT and n in top_level) or n == "__pycache__" or n.endswith(".egg-info")])
    done = subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(source)],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = subprocess.run([uv, "pip", "list", "--python", str(venv / "bin" / "python"), "--format", "json"],
                            env=env, capture_output=True, text=True, check=True).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert "braze-migrate" in installed and not installed & {"pytest", "pandas", "braze-sandbox", "distributed"}

    run_env = {**env, "PATH": f"{venv / 'bin'}:{env['PATH']}"}
    help_ = subprocess.run(["braze-migrate", "--help"], env=run_env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120, check=False)
    assert help_.returncode == 0 and "backfill" in help_.stdout and "plan" in help_.stdout, help_.stderr
    plan = subprocess.run(["braze-migrate", "plan", str(ROOT / "data/samples/day1"), "--state", str(tmp_path / "s"),
                           "--json"], env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert plan.returncode == 0, plan.stderr[-3000:]
    result = json.loads(plan.stdout)
    assert result["datasets"]["users"]["read"] > 0 and result["data_points"] > 0
    # Without the extra, the Dask flows say how to get them instead of a bare ModuleNotFoundError.
    dask = subprocess.run([str(venv / "bin" / "python"), "-c", "import flows.parallel"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert dask.returncode != 0 and "braze-migrate[dask]" in dask.stderr.strip().splitlines()[-1], dask.stderr
