"""Screenshots of the nightly run as an operator lives it (issue 26, items 2-9), from a real browser.

Starts everything on loopback by itself: the bundled sandbox, a Prefect server with `PREFECT_UI_URL` set, the
alert automations pointed at a local webhook receiver (whose page shows the alerts it got), and the deployments
served with `python -m flows.serve`; then runs what an operator meets in a night and photographs each page:

    python scripts/operator_screenshots.py            # Debian's Chromium (`apt-get install chromium`), Playwright

Screenshots go to docs/img/operator-*.png (1400 px wide).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # automations/, flows/: run from the repository
BIN = Path(sys.executable).parent
DAY1, DAY2 = ROOT / "data/samples/day1", ROOT / "data/samples/day2"
KEY = "operator-screenshots-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(check, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # not up yet
            if check():
                return
        time.sleep(0.5)
    raise SystemExit(f"{what} did not happen within {timeout:.0f} s")


class Alerts:
    """A webhook receiver on loopback; GET / shows every alert received, as a page to photograph."""

    def __init__(self):
        posts = self.posts = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                posts.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def do_GET(self):
                items = "".join(f"<section><h3>{html.escape(p.get('subject', ''))}</h3><pre>"
                                f"{html.escape(p.get('body', ''))}</pre></section>" for p in posts)
                body = (f"<html><body style='font-family:sans-serif;margin:24px;max-width:1300px'><style>pre{{white-space:pre-wrap}}</style><h2>Alerts received by the webhook "
                        f"({len(posts)})</h2>{items}</body></html>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def sandbox(work: Path) -> tuple[subprocess.Popen, str]:
    log = work / "sandbox.log"
    proc = start([str(BIN / "braze-migrate"), "sandbox", "--port", "0", "--api-key", KEY], dict(os.environ), log)
    found = []
    wait(lambda: found.append(re.search(r"http://127\.0\.0\.1:\d+", log.read_text()).group(0)) or True, "sandbox")
    return proc, found[0]


def faults(url: str, **changes) -> None:
    request = urllib.request.Request(f"{url}/_sandbox/config", data=json.dumps(changes).encode(), method="PATCH",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()


def broken_copy(work: Path) -> Path:
    """Day 2 with every email and loyalty_tier emptied: the guards hold it."""
    broken = work / "exports" / "broken"
    shutil.copytree(DAY2, broken)
    for part in (broken / "users").glob("*.parquet"):
        frame = pl.read_parquet(part)
        frame.with_columns(pl.lit(None, frame.schema["email"]).alias("email"),
                           pl.lit(None, frame.schema["loyalty_tier"]).alias("loyalty_tier")).write_parquet(part)
    return broken


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--out", default=str(ROOT / "docs/img"))
    p.add_argument("--port", type=int, default=0, help="the Prefect server's port (default: a free one)")
    p.add_argument("--only-lists", action="store_true",
                   help="only the deployments lists (no runs): operator-deployments-list*.png")
    p.add_argument("--only-parameters", action="store_true",
                   help="only the nightly deployment's Parameters tab and custom-run form (no runs): "
                        "operator-parameters-*.png")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="braze-operator-"))
    port = args.port or free_port()
    ui = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "PREFECT_UI_URL": ui, "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": f"{ui}/api"}
    env.pop("PREFECT_PROFILE", None)
    box, box_url = sandbox(work)
    server = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                   work / "server.log")
    served = None
    try:
        wait(lambda: urllib.request.urlopen(f"{ui}/api/health", timeout=2).status == 200, "prefect server", 300)
        os.environ.update(PREFECT_API_URL=f"{ui}/api", PREFECT_UI_URL=ui)
        alerts = Alerts()
        from automations.apply import apply, load_specs, webhook_block

        apply(load_specs(), webhook_block(alerts.url + "alerts"))
        served = start([sys.executable, "-m", "flows.serve", "--limit", "2"], {
            **env, "BRAZE_REST_ENDPOINT": box_url, "BRAZE_API_KEY": KEY, "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "BRAZE_MIGRATE_MAX_ATTEMPTS": "4", "BRAZE_MIGRATE_RETRY_BACKOFF_SECONDS": "12",
            "BRAZE_MIGRATE_READY_POLL_SECONDS": "1"}, work / "serve.log")
        asyncio.run(shoot(args, ui, work, box_url, alerts))
    finally:
        for proc in (served, server, box):
            if proc is not None:
                stop(proc)


async def shoot(args, ui: str, work: Path, box_url: str, alerts: Alerts) -> None:
    from playwright.async_api import async_playwright
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run

    out = Path(args.out)
    state = str(work / "state")

    async def registered() -> None:
        deadline = time.monotonic() + 300
        async with get_client() as client:
            while True:
                try:
                    await client.read_deployment_by_name("sync/nightly-sync")
                    await client.read_deployment_by_name("verify/verify")
                    return
                except Exception:  # not served yet
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(1)

    async def state_of(run_id, name: str):
        async with get_client() as client:
            while (run := await client.read_flow_run(run_id)).state.name != name and not (
                    name == "final" and run.state.is_final()):
                await asyncio.sleep(1)
            return run

    await registered()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=args.chromium)
        page = await browser.new_page(viewport={"width": 1400, "height": 1100}, device_scale_factor=1)

        async def lists() -> None:
            # 10: the list as a fresh browser opens it (Prefect 3.9's default UI: /v2), and the V1 list: the time
            # zone is the nightly's first tag in both; V2 marks a paused schedule "Paused", V1 only in a tooltip.
            await snap(f"{ui}/v2/deployments", "deployments-list", height=500)
            await snap(f"{ui}/deployments", "deployments-list-v1", height=500)

        async def snap(url: str, name: str, tab: str | None = None, artifact: str | None = None,
                       height: int = 1100) -> None:
            await page.set_viewport_size({"width": 1400, "height": height})
            await page.goto(url, wait_until="networkidle")
            await page.wait_for_timeout(1500)
            if tab:
                await page.get_by_text(tab, exact=True).first.click()
                await page.wait_for_timeout(1500)
            if artifact:
                await page.get_by_text(artifact, exact=True).last.click()
                await page.wait_for_timeout(2000)
            await page.screenshot(path=str(out / f"operator-{name}.png"), full_page=True)
            print(f"operator-{name}.png", flush=True)

        async def parameters() -> None:
            # 8: the parameters in sections, typed, with their defaults; `state` required. The Parameters tab needs
            # a wide window for its Default and Type columns; the form is photographed from its top after a Submit
            # without a state, which the form refuses, naming it. 7: verify's parameters (its `verify` section).
            async with get_client() as client:
                nightly = await client.read_deployment_by_name("sync/nightly-sync")
                verify = await client.read_deployment_by_name("verify/verify")
            await snap(f"{ui}/deployments/deployment/{verify.id}", "verify-parameters", tab="Parameters")
            await page.set_viewport_size({"width": 3000, "height": 1000})
            await page.goto(f"{ui}/deployments/deployment/{nightly.id}", wait_until="networkidle")
            await page.wait_for_timeout(1500)
            await page.get_by_text("Parameters", exact=True).first.click()
            await page.wait_for_timeout(1500)
            await page.screenshot(path=str(out / "operator-parameters-tab.png"), full_page=True)
            print("operator-parameters-tab.png", flush=True)
            await page.set_viewport_size({"width": 1400, "height": 2400})
            await page.goto(f"{ui}/deployments/deployment/{nightly.id}/run", wait_until="networkidle")
            await page.wait_for_timeout(2000)
            await page.locator("textarea").first.fill("s3://warehouse-exports/braze/{date:%Y-%m-%d}/")
            await page.get_by_role("button", name="Submit").click()
            await page.wait_for_timeout(1500)
            await page.evaluate("() => { for (const e of document.querySelectorAll('*')) e.scrollTop = 0; }")
            await page.wait_for_timeout(500)
            await page.screenshot(path=str(out / "operator-parameters-form.png"), full_page=True)
            print("operator-parameters-form.png", flush=True)

        async def form_sends() -> None:
            """What the custom-run form sends, submitted with a state and nothing else changed (docs/prefect.md,
            'Parameters'): printed, and every field of every section must be there."""
            from braze_migrate.settings import flow_sections, section_options

            async with get_client() as client:
                nightly = await client.read_deployment_by_name("sync/nightly-sync")
                await page.goto(f"{ui}/deployments/deployment/{nightly.id}/run", wait_until="networkidle")
                await page.wait_for_timeout(2000)
                await page.locator("textarea").first.fill(str(work / "exports" / "form-check"))
                await page.locator("textarea").nth(1).fill(str(work / "state-form-check"))
                await page.get_by_role("button", name="Submit").click()
                await page.wait_for_timeout(3000)
                (run,) = await client.read_flow_runs(limit=1, sort="EXPECTED_START_TIME_DESC")
            sent = run.parameters
            print("the custom-run form sent:", json.dumps(sent, sort_keys=True), flush=True)
            missing = {s: set(section_options(s)) - set(sent.get(s) or {}) for s in flow_sections()}
            assert not any(missing.values()), f"the form left out {missing}"
            print(f"every field of the {len(flow_sections())} sections was sent", flush=True)

        if args.only_lists or args.only_parameters:
            if args.only_lists:
                await lists()
            if args.only_parameters:
                await parameters()
                await form_sends()
            await browser.close()
            return
        await parameters()

        warm = await run_deployment("backfill/backfill", timeout=600, parameters={"source": str(DAY1), "state": state})
        assert warm.state.is_completed(), warm.state

        # 2: held, answered "hold": the report says what was held and how to accept it exactly.
        broken = broken_copy(work)
        held = await run_deployment("sync/nightly-sync", timeout=0, parameters={
            "source": str(broken), "state": state, "guards": {"decision_timeout": 900}})
        await state_of(held.id, "Paused")
        await snap(f"{ui}/runs/flow-run/{held.id}", "held-form")
        await page.get_by_text("Resume", exact=True).first.click()  # the decision form, with the figures
        await page.wait_for_timeout(2500)
        await page.screenshot(path=str(out / "operator-held-form.png"), full_page=True)
        await resume_flow_run(held.id, run_input={"decision": "hold", "answered_by": "Dana (ops on call)"})
        await state_of(held.id, "final")
        await snap(f"{ui}/runs/flow-run/{held.id}", "held-report", tab="Artifacts", artifact="sync-report")

        # 3: accepted: logged with who and when; the guards artifact and the report say so; waiting apart.
        accepted = await run_deployment("sync/nightly-sync", timeout=0, parameters={
            "source": str(broken), "state": state, "guards": {"decision_timeout": 900}})
        await state_of(accepted.id, "Paused")
        await asyncio.sleep(20)  # someone reads the figures before answering: the report shows the wait apart
        await resume_flow_run(accepted.id, run_input={"decision": "accept", "answered_by": "Dana (ops on call)"})
        await state_of(accepted.id, "final")
        await snap(f"{ui}/runs/flow-run/{accepted.id}", "accepted-guards", tab="Artifacts", artifact="guards")
        await snap(f"{ui}/runs/flow-run/{accepted.id}", "accepted-report", tab="Artifacts", artifact="sync-report")
        await snap(f"{ui}/runs/flow-run/{accepted.id}", "accepted-logs", tab="Logs", height=2300)

        # 4: Braze failing: a WARNING naming the error every 30 s; the end counts the batches right.
        faults(box_url, fail_rate=1.0)
        failing = await run_deployment("backfill/backfill", timeout=0, parameters={
            "source": str(DAY2), "state": str(work / "state-failing"), "guards": {"decision_timeout": 2}})
        await state_of(failing.id, "final")
        faults(box_url, fail_rate=0.0)
        await snap(f"{ui}/runs/flow-run/{failing.id}", "failing-logs", tab="Logs", height=2600)

        # 9 and 1: tonight's export waited for, then its progress; then the same export again.
        tonight = work / "exports" / "2026-12-07"
        live = await run_deployment("sync/nightly-sync", timeout=0, parameters={
            "source": str(work / "exports" / "{date}"), "date": "2026-12-07", "state": str(work / "state-live"),
            "readiness": {"ready_marker": "_SUCCESS", "ready_deadline": 900}, "requests": {"rate_limit": "4/1s"}})
        await asyncio.sleep(15)
        await snap(f"{ui}/runs/flow-run/{live.id}", "readiness-waiting", tab="Artifacts", artifact="sync-readiness")
        shutil.copytree(DAY1, tonight)
        (tonight / "_SUCCESS").write_text("")
        await asyncio.sleep(25)
        await snap(f"{ui}/runs/flow-run/{live.id}", "progress-live", tab="Artifacts", artifact="sync-progress")
        await state_of(live.id, "final")
        again = await run_deployment("sync/nightly-sync", timeout=600, parameters={
            "source": str(work / "exports" / "{date}"), "date": "2026-12-07", "state": str(work / "state-live"),
            "readiness": {"ready_marker": "_SUCCESS"}})
        await snap(f"{ui}/runs/flow-run/{again.id}", "unchanged-report", tab="Artifacts", artifact="sync-report")

        # 6: run names; 7: verify without a state default; 5: alerts with the run's URL and the form's choices.
        await snap(f"{ui}/runs", "run-names")
        async with get_client() as client:
            verify = await client.read_deployment_by_name("verify/verify")
            nightly = await client.read_deployment_by_name("sync/nightly-sync")
        await snap(f"{ui}/deployments/deployment/{verify.id}", "verify-parameters", tab="Parameters")
        await snap(f"{ui}/deployments/deployment/{nightly.id}", "nightly-deployment")
        await lists()
        await snap(f"{ui}/automations", "automations")
        await asyncio.sleep(10)
        await snap(alerts.url, "alerts-received")
        await browser.close()


if __name__ == "__main__":
    main()
