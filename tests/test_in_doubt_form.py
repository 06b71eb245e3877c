"""A deployment run's in-doubt decision forms follow the one decision table (braze_migrate/run/advice.py): settle
(`settle --check`) or hold; then, only for the batches the check could not decide, named with the most duplicates
a resend may cause, delivered / resend / hold; the plain resume after. Nothing in doubt: nothing asked. The alert
and the docs name exactly the forms' choices (flows/decisions.py; the Prefect round trip: test_prefect_decisions)."""

from __future__ import annotations

import logging
import re
import typing
from pathlib import Path

import pytest
import yaml

from braze_migrate.ops.settle import SettleReport
from braze_migrate.run.stages import Answer
from braze_migrate.summary import InDoubtBatch, RunStatus, RunSummary
from flows import decisions

ROOT = Path(__file__).resolve().parent.parent


def _choices(form) -> set[str]:
    return set(typing.get_args(form.model_fields["decision"].annotation))


def _words(choices: str) -> set[str]:
    return set(re.split(r",\s*|\s+or\s+", choices))


def summary(in_doubt: list[InDoubtBatch], status: RunStatus = RunStatus.INCOMPLETE) -> RunSummary:
    return RunSummary(run_id="R1", kind="sync", source="/x", state="/s", status=status, in_doubt=in_doubt,
                      resume_command="braze-migrate sync /x --state /s")


HELD = [InDoubtBatch(batch_no=3, events=10, purchases=2, action="12 events/purchases held as pending (--in-doubt skip)"),
        InDoubtBatch(batch_no=5, events=4, purchases=0, action="4 events/purchases held as pending (--in-doubt skip)")]


class Script:
    """The person answering (scripted), the check against Braze and the settlements (recorded)."""

    def __init__(self, monkeypatch, answers: list[str], undecided: list[int]):
        self.answers, self.asked, self.settled, self.resumed = list(answers), [], [], 0
        monkeypatch.setattr(decisions, "in_deployment", lambda: True)
        monkeypatch.setattr(decisions, "get_run_logger", lambda: logging.getLogger("test"))
        monkeypatch.setattr(decisions, "ask", self.ask)
        report = SettleReport("R1", settled={b.batch_no: "resend" for b in HELD if b.batch_no not in undecided},
                              undecided=undecided, counts={3: (10, 2), 5: (4, 0)})
        monkeypatch.setattr(decisions.settling, "check", lambda run_id, options: report)
        monkeypatch.setattr(decisions.settling, "decide", lambda run_id, options, decision, batches, decided_by:
                            self.settled.append((decision, list(batches), decided_by)))

    def ask(self, form, description, timeout_s, message=None, asked=""):
        self.asked.append((form, description, message))
        return Answer(asked, self.answers.pop(0), "ops", "2026-12-06T00:00:00Z", 1.0)

    def resume(self):
        self.resumed += 1
        return summary([], RunStatus.COMPLETED)


def test_the_in_doubt_form_never_offers_a_resend_of_everything():
    assert _choices(decisions.InDoubtDecision) == {"settle", "hold"} == _words(decisions.IN_DOUBT_CHOICES)
    assert _choices(decisions.UndecidedDecision) == {"delivered", "resend", "hold"} == _words(
        decisions.UNDECIDED_CHOICES)
    assert _choices(decisions.GuardDecision) == {"accept", "hold"} == _words(decisions.GUARD_CHOICES)


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.INCOMPLETE, RunStatus.INTERRUPTED])
def test_nothing_in_doubt_asks_nothing(monkeypatch, status):
    script = Script(monkeypatch, [], [])
    after, answers = decisions.settle_in_doubt(summary([], status), {}, 10, script.resume)
    assert answers == [] and script.asked == [] and script.resumed == 0 and after.status is status


def test_settle_checks_first_then_resumes_plainly(monkeypatch):
    script = Script(monkeypatch, ["settle"], undecided=[])
    after, answers = decisions.settle_in_doubt(summary(HELD), {}, 10, script.resume)
    assert [a.decision for a in answers] == ["settle"] and len(script.asked) == 1
    assert script.settled == [] and script.resumed == 1 and after.status is RunStatus.COMPLETED
    form, description, message = script.asked[0]
    assert form is decisions.InDoubtDecision and "settle or hold" in message
    assert "settle R1 --check" in description and "resend" not in message


def test_only_the_undecided_batches_are_offered_a_resend_with_the_duplicates_it_may_cause(monkeypatch):
    script = Script(monkeypatch, ["settle", "resend"], undecided=[5])
    _, answers = decisions.settle_in_doubt(summary(HELD), {}, 10, script.resume)
    assert [a.decision for a in answers] == ["settle", "resend"]
    form, description, message = script.asked[1]
    assert form is decisions.UndecidedDecision and "batch(es) 5 of run R1" in message
    assert "up to 4 events and 0 purchases" in message and "up to 4 events and 0 purchases" in description
    assert script.settled == [("resend", [5], "ops")] and script.resumed == 1


@pytest.mark.parametrize("answers", [["hold"], ["settle", "hold"], ["settle", None]])
def test_hold_settles_nothing_more(monkeypatch, answers):
    script = Script(monkeypatch, answers, undecided=[3, 5])
    _, given = decisions.settle_in_doubt(summary(HELD), {}, 10, script.resume)
    assert script.settled == []
    assert script.resumed == (1 if answers[0] == "settle" else 0)  # what the check settled is sent
    assert [a.decision for a in given] == answers


def test_the_held_alert_and_the_docs_name_the_forms_choices():
    specs = yaml.safe_load((ROOT / "automations/nightly.yaml").read_text())
    held = next(a for a in (specs["automations"] if isinstance(specs, dict) else specs) if "held" in a["name"])
    body = held["actions"][0]["body"]
    for choices in (decisions.GUARD_CHOICES, decisions.IN_DOUBT_CHOICES, decisions.UNDECIDED_CHOICES):
        assert choices in body
    assert "resend or hold for in-doubt" not in body
    prefect_md = (ROOT / "docs/prefect.md").read_text()
    assert "(accept or hold; settle or hold; delivered, resend or hold)" in prefect_md
    assert "asking *resend / hold*" not in (ROOT / "README.md").read_text()
