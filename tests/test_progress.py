"""Progress events, their rate and ETA, and the terminal's plain lines; on a fake clock (nothing sleeps)."""

from __future__ import annotations

import io
import itertools

from braze_migrate import progress
from braze_migrate.cli.progress import PlainLines
from braze_migrate.progress import Meter, ProgressEvent, eta_text, summary_text


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rate_and_eta_follow_the_recent_window():
    clock = Clock()
    meter = Meter(window_s=10, clock=clock)
    meter.update(ProgressEvent("loading", 0, 1000, "batches"))
    assert meter.rate is None and meter.eta_s is None
    clock.t += 10
    meter.update(ProgressEvent("loading", 500, 1000, "batches"))
    assert meter.rate == 50 and meter.eta_s == 10
    clock.t += 20  # slowed down (429s): the window forgets the fast start
    meter.update(ProgressEvent("loading", 600, 1000, "batches"))
    clock.t += 5
    meter.update(ProgressEvent("loading", 625, 1000, "batches"))
    assert meter.rate == 5  # the rate shown is the window's
    assert 375 / 50 < meter.eta_s < 75  # the ETA eases toward the slower rate rather than jumping to it
    meter.update(ProgressEvent("loading", 1000, 1000, "batches"))
    assert meter.eta_s == 0


def test_the_eta_is_smooth_through_uneven_progress_and_short_stalls():
    """Batches acknowledged in bursts (429 windows): the ETA moves by small steps and never becomes unknown."""
    clock = Clock()
    meter = Meter(window_s=5, clock=clock)
    done, etas = 0, []
    for second, burst in enumerate([30, 0, 0, 40, 0, 35, 0, 0, 0, 45, 0, 30, 0, 0, 40] * 4):
        clock.t = second + 1
        done += burst
        meter.update(ProgressEvent("loading", done, 2000, "batches"))
        if second >= 3:  # from the first progress on
            etas.append(meter.eta_s)
    assert all(eta is not None for eta in etas)
    # Each second the ETA moves by at most a few seconds besides counting down (the raw one jumped by half).
    assert all(abs(b - (a - 1)) <= max(5.0, 0.1 * a) for a, b in itertools.pairwise(etas)), etas
    assert 0.8 < etas[-1] / ((2000 - done) / (220 / 15)) < 1.25  # and it is right: the average rate


def test_eta_text():
    assert eta_text(None) == "ETA ?"
    assert eta_text(65.4) == "ETA 1:05"
    assert eta_text(3 * 3600 + 62) == "ETA 3:01:02"


def test_the_loading_line_has_counts_rate_eta_and_what_requests_met():
    clock = Clock()
    meter = Meter(clock=clock)
    meter.update(ProgressEvent("loading", 0, 40, "batches", objects_total=3000))
    clock.t += 2
    meter.update(ProgressEvent("loading", 10, 40, "batches", objects_done=750, objects_total=3000, requests=12,
                               throttled=2, retries=1, in_doubt=1))
    line = summary_text(meter)
    assert line.startswith("loading: 10/40 batches (25%), 750/3,000 objects, 5.0 batches/s, ETA 0:06")
    assert "12 requests (6/s)" in line and "2 throttled (429)" in line and "1 retried" in line
    assert "1 in doubt" in line


def test_plain_lines_come_at_start_every_period_and_at_the_end():
    clock = Clock()
    out = io.StringIO()
    lines = PlainLines(out, every_s=5, clock=clock)
    for done in range(11):
        lines(ProgressEvent("planning", done, 10, "partitions"))
        clock.t += 1
    lines(ProgressEvent("planning", 10, 10, "partitions", finished=True))
    text = out.getvalue().splitlines()
    assert len(text) == 4, text
    assert text[0].startswith("[braze-migrate] planning: 0/10 partitions (0%)")
    assert "1.0 partitions/s" in text[1] and "ETA 0:05" in text[1]
    assert text[-1].endswith("done")


def test_listeners_get_events_and_a_failing_one_does_not_stop_the_run():
    got: list[ProgressEvent] = []

    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("renderer bug")

    sink = progress.fan_out(None)
    with progress.listening(broken), progress.listening(got.append):
        sink(ProgressEvent("reading", 1, 2, "datasets"))
    sink(ProgressEvent("reading", 2, 2, "datasets"))
    assert [e.done for e in got] == [1]


def test_the_prefect_artifact_text_has_each_stage_counts_rates_and_an_eta():
    from flows.artifacts import progress_markdown

    clock = Clock()
    meters = {"planning": Meter(clock=clock), "loading": Meter(clock=clock)}
    meters["planning"].update(ProgressEvent("planning", 4, 4, "units", finished=True))
    meters["loading"].update(ProgressEvent("loading", 0, 80, "batches", objects_total=6000))
    clock.t += 4
    meters["loading"].update(ProgressEvent("loading", 20, 80, "batches", objects_done=1500, objects_total=6000,
                                           requests=23, throttled=3, retries=2, in_doubt=1))
    text = progress_markdown(meters, "run-1", meters["loading"])
    assert text.splitlines()[0] == "**Loading**: 20 of 80 batches, ETA 0:12 (run `run-1`, 4.0 s so far)"
    for row in ("| planning | 4 of 4 units (100%), done |", "| batches | 20 of 80 acknowledged (25%) |",
                "| objects | 1,500 of 6,000 |", "| rate | 5.0 batches/s, 5.8 requests/s |", "| requests | 23 |",
                "| rate limited (429) | 3 |", "| retries | 2 |", "| in-doubt batches | 1 |"):
        assert row in text, (row, text)
    assert "| ETA | 0:12 (about " in text
