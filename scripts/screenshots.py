"""Regenerate the README's Prefect screenshots from a real browser: a backfill while it loads, and finished.

Needs the deployments served against a Prefect server (README, "Running it the Prefect way") and Playwright
with a Chromium (`pip install playwright`; Debian: `apt-get install chromium`, used by default):

    python scripts/screenshots.py --ui http://127.0.0.1:4200 --source data/samples/day1 --rate-limit 10/1s

The run loads SOURCE at a low rate limit, so there is time to catch it mid-load, into a temporary state
folder that first took a backfill of the small day-1 sample (a first load would plan while it loads; this
one shows its own `plan` task). Screenshots go to docs/img/prefect-progress-live.png and docs/img/prefect-run-finished.png.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ui", default="http://127.0.0.1:4200", help="the Prefect UI (its API is UI/api)")
    p.add_argument("--source", default=str(ROOT / "data/samples/day1"))
    p.add_argument("--rate-limit", default="5/1s")
    p.add_argument("--warm-up", default=str(ROOT / "data/samples/day1"), help="loaded first, into the same state")
    p.add_argument("--accept", default="", help="guard figures to accept (`--accept` of the CLI), e.g. rows:push_tokens")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--out", default=str(ROOT / "docs/img"))
    args = p.parse_args()
    asyncio.run(shoot(args))


async def shoot(args) -> None:
    from playwright.async_api import async_playwright
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    out = Path(args.out)
    with temporary_settings(updates={PREFECT_API_URL: f"{args.ui}/api"}):
        state = tempfile.mkdtemp(prefix="braze-screenshots-")
        warm = await run_deployment("backfill/backfill", timeout=300, parameters={
            "source": str(Path(args.warm_up).resolve()), "state": state})
        assert warm.state is not None and warm.state.is_completed(), f"the warm-up backfill ended {warm.state}"
        run = await run_deployment("backfill/backfill", timeout=0, parameters={
            "source": str(Path(args.source).resolve()), "state": state, "rate_limit": args.rate_limit,
            "accept": [a for a in args.accept.split(",") if a]})
        async with get_client() as client, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=args.chromium)
            page = await browser.new_page(viewport={"width": 1400, "height": 1250}, device_scale_factor=1)

            async def progress_text() -> str:
                found = await client.read_artifacts(artifact_filter=ArtifactFilter(
                    flow_run_id={"any_": [run.id]}, key={"any_": ["backfill-progress"]}))
                return found[-1].description or "" if found else ""

            deadline = time.monotonic() + 300
            while "| ETA | " not in (text := await progress_text()) or "| ETA | done" in text:
                assert time.monotonic() < deadline, "the run never showed a live ETA"
                await asyncio.sleep(0.5)
            await asyncio.sleep(1)
            await artifacts_tab(page, f"{args.ui}/runs/flow-run/{run.id}")
            await page.get_by_text("backfill-progress", exact=True).last.click()  # the artifact's own page
            await page.wait_for_timeout(2000)
            await page.screenshot(path=str(out / "prefect-progress-live.png"), full_page=True)

            while not (await client.read_flow_run(run.id)).state.is_final():
                assert time.monotonic() < deadline, "the run did not finish"
                await asyncio.sleep(1)
            await artifacts_tab(page, f"{args.ui}/runs/flow-run/{run.id}")
            await page.screenshot(path=str(out / "prefect-run-finished.png"), full_page=True)
            await browser.close()
    print(f"screenshots of run {run.name} in {out}")


async def artifacts_tab(page, url: str) -> None:
    """The flow run's page with its Artifacts tab open."""
    await page.goto(url, wait_until="networkidle")
    await page.get_by_text("Artifacts", exact=True).first.click()
    await page.wait_for_timeout(2000)


if __name__ == "__main__":
    main()
