"""What a load flow does when it cannot simply finish: ask a person, or fail in a way that reads as failure.

- Decisions: a deployment run that the guards held, or that ends with events/purchases in doubt, pauses and asks
  in the Prefect UI (`pause_flow_run(wait_for_input=...)`) with the figures on the form. Held by the guards:
  accept (send the held plan) or hold. In doubt, the choices follow the one decision table
  (braze_migrate/run/advice.py): settle (`settle --check`: read the users back from Braze, settle what the counts
  decide, then the plain resume) or hold; only for the batches the check could not decide, a second form names
  them and the most duplicates a resend may cause: delivered, resend or hold. Nobody answering within
  `decision_timeout` means keep holding: nothing more is sent. A CLI run never pauses: it prints the advice.
- Failures: an error the user can fix (a missing source, a state folder in use, a wrong key) ends the task that
  met it and the flow Failed with one line and no traceback in the logs; a genuine bug still surfaces whole.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Literal

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import UnfinishedRun
from prefect.input import RunInput
from prefect.input.run_input import keyset_from_paused_state
from prefect.states import Failed, Paused
from prefect.utilities.engine import propose_state_sync
from pydantic import Field

from braze_migrate.errors import user_message
from braze_migrate.run import settling
from braze_migrate.run.advice import for_prefect
from braze_migrate.run.engine import Prepared
from braze_migrate.run.public import GuardReport
from braze_migrate.run.stages import Answer, now_iso
from braze_migrate.settings import ConfigError, LoadSettings
from braze_migrate.summary import RunStatus, RunSummary, RunUnfinished

POLL_SECONDS = 2
PAUSE_GRACE_S = 600  # the server-side pause outlives our wait by this much (see `ask`)


GUARD_CHOICES = "accept or hold"
IN_DOUBT_CHOICES = "settle or hold"
UNDECIDED_CHOICES = "delivered, resend or hold"
BY_HELP = "your name or team: recorded with the decision in the run's logs and report"


class GuardDecision(RunInput):
    """Tonight's export moves more values than a normal night (figures above)."""

    decision: Literal["hold", "accept"] = Field(
        "hold", description="accept: send the held plan exactly as planned; hold: send nothing, end Failed")
    answered_by: str = Field("", description=BY_HELP, max_length=80)


class InDoubtDecision(RunInput):
    """Events or purchases of this run may have reached Braze already (figures above)."""

    decision: Literal["hold", "settle"] = Field(
        "hold", description=("settle: read their users back from Braze, settle the batches the counts decide, then "
                             "send what Braze does not have and the rows still pending (no duplicate); "
                             "hold: keep them pending"))
    answered_by: str = Field("", description=BY_HELP, max_length=80)


class UndecidedDecision(RunInput):
    """The check could not decide these batches from what Braze gives back (figures above)."""

    decision: Literal["hold", "delivered", "resend"] = Field(
        "hold", description=("delivered: Braze has them, never send them; resend: Braze does not have them, send "
                             "them once (if it had them, duplicates up to the figures above); hold: keep them pending"))
    answered_by: str = Field("", description=BY_HELP, max_length=80)


def in_deployment() -> bool:
    """Whether this flow run belongs to a deployment (someone may answer in the UI), not a CLI run."""
    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)


def ask(form: type[RunInput], description: str, timeout_s: int, message: str | None = None,
        asked: str = "") -> Answer:
    """Pause this flow run until someone answers the form: their decision (None after `timeout_s`), who gave
    it and when, logged as one line.

    As `pause_flow_run(wait_for_input=form)` does, except that the pause the server sees lasts `PAUSE_GRACE_S`
    longer than this wait: once a pause expires the server replaces whatever state the run proposes by its own
    "never resumed" failure, and the run's Failed state should say what was held and how to accept it."""
    ctx = FlowRunContext.get()
    key = f"decision-{uuid.uuid4().hex[:12]}"  # a pause key is good once per run
    # The state's message is what the UI's run list and the "held" alert show.
    paused = Paused(timeout_seconds=timeout_s + PAUSE_GRACE_S, reschedule=False, pause_key=key, message=message)
    keyset = keyset_from_paused_state(paused)
    paused.state_details.run_input_keyset = keyset
    with get_client(sync_client=True) as client:
        state = propose_state_sync(client, paused, flow_run_id=ctx.flow_run.id)
        if not state.is_paused():
            raise RuntimeError(f"the run could not pause for a decision: {state.type.value}")
        form = form.with_initial_data(description=description)
        form.save(keyset)
        get_run_logger().info("waiting up to %d s for a decision in the Prefect UI (the run page's form)", timeout_s)
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            run = client.read_flow_run(ctx.flow_run.id)
            if run.state is not None and run.state.is_running():
                given = form.load(keyset)
                answer = Answer(asked, given.decision, given.answered_by.strip() or "someone in the Prefect UI "
                                "(no name given)", now_iso(), round(time.monotonic() - started, 1))
                get_run_logger().info("%s", answer.line())
                return answer
    answer = Answer(asked, None, "nobody", now_iso(), round(time.monotonic() - started, 1))
    get_run_logger().warning("nobody answered within %d s: holding, nothing is sent (%s)", timeout_s, answer.line())
    return answer


def guard_decider(timeout_s: int) -> Callable[[GuardReport, Prepared], Answer]:
    """The `decide` of a flow's stages: a deployment run asks; a CLI run holds (the CLI prints the command).
    The `guards` artifact is written when the run is held and again once it is decided, so it never says
    "held" of a run that was accepted."""

    def decide(report: GuardReport, prepared: Prepared) -> Answer:
        markdown = guards_markdown(report, prepared)
        create_markdown_artifact(markdown, key="guards", description="guard figures of the held plan")
        get_run_logger().warning("%s", report.message())
        if not in_deployment():
            answer = Answer(report.message(), "hold", "the command line (a CLI run never waits)", now_iso())
            get_run_logger().info("%s", answer.line())
        else:
            answer = ask(GuardDecision, markdown, timeout_s,
                         message=f"{report.message()} — answer {GUARD_CHOICES} on the run page",
                         asked="the guards' hold of run " + prepared.run_id)
        create_markdown_artifact(guards_markdown(report, prepared, answer), key="guards",
                                 description=f"guard figures: {answer.decision or 'nobody answered'}")
        return answer

    return decide


def ask_in_doubt(summary: RunSummary, timeout_s: int) -> Answer | None:
    """A deployment run that ends with events/purchases in doubt asks whether to settle them (None: not asked,
    as when nothing is in doubt)."""
    held = in_doubt_batches(summary)
    if not held or not in_deployment() or summary.status is not RunStatus.INCOMPLETE:
        return None
    lines = [(f"**{len(held)} batches** of run `{summary.run_id}` were sent without a definite answer from Braze "
             "(5xx, timeout): their events and purchases may already be in Braze, so they are held."),
             "", "| batch | events | purchases |", "|---:|---:|---:|",
             *(f"| {b.batch_no} | {b.events} | {b.purchases} |" for b in held), "",
             ("**settle** reads their users back from Braze (`braze-migrate settle RUN --check`), settles every batch "
              "the counts decide, then sends what Braze does not have and the rows still pending: no duplicate. "
              "Batches the counts cannot decide are asked about next, by number. **hold** keeps them pending "
              f"(later: `braze-migrate settle {summary.run_id} --check --state {summary.state}`, then the plain "
              "resume).")]
    return ask(InDoubtDecision, "\n".join(lines), timeout_s, asked=f"{len(held)} in-doubt batches of run "
               f"{summary.run_id}", message=f"{len(held)} batches of run {summary.run_id} in doubt: answer "
               f"{IN_DOUBT_CHOICES} on the run page")


def in_doubt_batches(summary: RunSummary) -> list:
    """The batches a run holds in doubt (commit/accounting.py in_doubt_batches marks them "held")."""
    return [b for b in summary.in_doubt if "held" in b.action]


def ask_undecided(run_id: str, undecided: list[int], counts: dict[int, tuple[int, int]], timeout_s: int) -> Answer:
    """After the check, the batches it could not decide: named, with the most duplicates a resend may cause."""
    events = sum(counts.get(b, (0, 0))[0] for b in undecided)
    purchases = sum(counts.get(b, (0, 0))[1] for b in undecided)
    names = ", ".join(map(str, undecided))
    lines = [(f"The check read the users back from Braze but could not decide **batch(es) {names}** of run "
              f"`{run_id}` (an occurrence older than 90 days, a later one hiding it, or a user Braze does not know)."),
             "", "| batch | events | purchases |", "|---:|---:|---:|",
             *(f"| {b} | {counts.get(b, (0, 0))[0]} | {counts.get(b, (0, 0))[1]} |" for b in undecided), "",
             ("**delivered**: Braze has them (check a few users in the dashboard); never sent again. **resend**: Braze "
              f"does not have them; sent once, and if it had them, up to {events} events and {purchases} purchases "
              "become duplicates. **hold**: they stay pending.")]
    return ask(UndecidedDecision, "\n".join(lines), timeout_s, asked=f"batch(es) {names} of run {run_id} that the "
               f"check could not decide", message=f"batch(es) {names} of run {run_id} undecided by the check: answer "
               f"{UNDECIDED_CHOICES} on the run page (a resend may duplicate up to {events} events and {purchases} "
               "purchases)")


def settle_in_doubt(summary: RunSummary, settings: LoadSettings, timeout_s: int, resume: Callable[[], RunSummary]
                    ) -> tuple[RunSummary, list[Answer]]:
    """The decision table for a deployment run that left events/purchases in doubt: asked, `settle` checks them
    against Braze, asks about the batches the check could not decide (delivered / resend / hold), then resumes
    plainly (`resume`: the same command without `--in-doubt resend`). Returns the summary to report (the
    resumed run's, or this one's) and the answers given."""
    answer = ask_in_doubt(summary, timeout_s)
    if answer is None:
        return summary, []
    answers = [answer]
    if answer.decision != "settle":
        return summary, answers
    logger = get_run_logger()
    report = settling.check(summary.run_id, settings)
    for decision in ("delivered", "resend"):
        done = [b for b, d in report.settled.items() if d == decision]
        if done:
            logger.info("settle --check of run %s: batch(es) %s settled as %s", summary.run_id,
                        ", ".join(map(str, done)), decision)
    if report.undecided:
        second = ask_undecided(summary.run_id, report.undecided, report.counts, timeout_s)
        answers.append(second)
        if second.decision in ("delivered", "resend"):
            settling.decide(summary.run_id, settings, second.decision, report.undecided, decided_by=second.by)
            logger.info("batch(es) %s of run %s settled as %s by %s", ", ".join(map(str, report.undecided)),
                        summary.run_id, second.decision, second.by)
    return resume(), answers


def guards_markdown(report: GuardReport, prepared: Prepared, answer: Answer | None = None) -> str:
    """The figures over their thresholds and every column's shares, as the form's and artifact's text; with
    the answer once decided (who, when, after how long)."""
    if answer is None:
        head = f"**Held: nothing was sent yet.** Run `{prepared.run_id}` ({prepared.batches} batches planned)."
    elif answer.decision == "accept":
        head = (f"**Accepted by {answer.by} at {answer.at}** (after {answer.waited_s:.0f} s): run "
                f"`{prepared.run_id}` sends its {prepared.batches} planned batches exactly as planned.")
    else:
        head = (f"**Held: nothing was sent.** Run `{prepared.run_id}` ({prepared.batches} batches planned): "
                f"{answer.decision or 'nobody answered'} ({answer.by}, {answer.at}).")
    lines = [head, ""]
    lines += [f"- {f.text()}" for f in report.held]
    # Four narrow columns: the form's dialog is about 400 px wide and cut a wider table off at the right.
    lines += ["", ("**accept** sends the held plan exactly as planned; **hold** ends the run Failed (fix the export "
              "and run again)."), "", "| column | users | unset | changed |", "|---|---:|---:|---:|"]
    lines += [f"| {report.column_label(c['column'])} | {c['users']:,} | {c['unset']:,} ({c['unset_share']:.1%}) | {c['changed']:,} "
              f"({c['changed_share']:.1%}) |" for c in report.columns]
    if report.datasets:
        lines += ["", "| dataset | last acknowledged | tonight | down |", "|---|---:|---:|---:|"]
        lines += [f"| {d['dataset']} | {d['before']:,} | {d['tonight']:,} | {d['drop_share']:.1%} |"
                  for d in report.datasets]
    return "\n".join(lines)


ENGINE_EXIT = "Engine execution exited with unexpected exception"


class QuietEngineExit(logging.Filter):
    """Drop Prefect's "Engine execution exited with unexpected exception" record, and its traceback, for a run
    that ended Failed on purpose. When a deployment run's process finishes, the engine re-raises its Failed
    state's data and logs it as a crash into the run's logs, though the run's own Failed state already says what
    happened and what to do. Likewise for a run cancelled from the UI or `prefect flow-run cancel`: the load stops
    cleanly (its summary says interrupted, the next run resumes), then the engine asks the result of a run in
    the CANCELLING state (`UnfinishedRun`). Genuine bugs still get the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The run's logger says ENGINE_EXIT; the engine's own (`prefect.engine`, the serving process's output)
        # "Execution of flow run '<id>' exited with unexpected exception".
        if not record.exc_info or not (record.msg == ENGINE_EXIT or str(record.msg).startswith("Execution of flow run")
                                       and str(record.msg).endswith("exited with unexpected exception")):
            return True
        exc = record.exc_info[1]
        cancelled = isinstance(exc, UnfinishedRun) and any(f"Run is in {s} state" in str(exc)
                                                           for s in ("CANCELLING", "CANCELLED"))
        return not (cancelled or isinstance(exc, RunUnfinished) or (exc is not None and one_line(exc) is not None))


class NoEmptyTraceback(logging.Filter):
    """Prefect logs a task that returned a Failed state ("Task run failed with state: ...") with `exc_info`
    although no exception is being handled, which prints a stray `NoneType: None` line under it; the record
    keeps its message, without the empty traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is not None and record.exc_info[0] is None:
            record.exc_info = None
        return True


for _name in ("prefect.flow_runs", "prefect.engine"):
    if not any(isinstance(f, QuietEngineExit) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(QuietEngineExit())
for _name in ("prefect.flow_runs", "prefect.task_runs"):
    if not any(isinstance(f, NoEmptyTraceback) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(NoEmptyTraceback())


def one_line(exc: BaseException) -> str | None:
    """The one line of an error the user can fix, or None for a bug. A deployment run says it the Prefect way
    (Retry or a new run of the deployment where the CLI says "the same command"); the CLI's own flow runs (their
    logs print in the terminal) keep the CLI's words."""
    if isinstance(exc, ConfigError):
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    else:
        line = user_message(exc)
    return for_prefect(line) if line is not None and in_deployment() else line


def cleanly(fn):
    """A task body whose user errors end the task Failed with one line (no traceback logged); the flow calling
    it receives the error itself and ends Failed the same way (`failed`)."""

    @functools.wraps(fn)
    def body(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            message = one_line(exc)
            if message is None:
                raise
            get_run_logger().error("%s", message)  # in the red task's logs, which the flow run's logs show
            _TOLD.add((_flow_run_id(), message))
            return Failed(message=message, data=exc)

    return body


# The user errors a task has logged (flow run id, line): the flow then ends Failed with the same line as its
# state message without logging it a second time (the trial of #21 saw every such line twice in a run's logs).
_TOLD: set[tuple[str | None, str]] = set()


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


class FailedWith(Exception):
    """The data of a task that ends Failed but still hands on a result (`value`) to the stages after it."""

    def __init__(self, message: str, value=None):
        super().__init__(message)
        self.value = value

    def __reduce__(self):
        return type(self), (str(self), self.value)


def called(task):
    """`task` as a plain call for the stages: its result, or its error raised here (a task that ended Failed
    by `cleanly` returns a state, which would otherwise travel on as if it were a result)."""

    @functools.wraps(task.fn)
    def call(*args, **kwargs):
        result = task(*args, return_state=True, **kwargs).result(raise_on_failure=False)
        if isinstance(result, FailedWith):
            return result.value
        if isinstance(result, BaseException):
            raise result
        return result

    return call


def failed(exc: BaseException):
    """The flow's Failed state for an error the user can fix (None: a bug, let it raise), its line logged once:
    by the flow, unless the task that raised it already logged it (with the task's name, `cleanly`)."""
    message = one_line(exc)
    if message is None:
        return None
    key = (_flow_run_id(), message)
    if key in _TOLD:
        _TOLD.discard(key)
    else:
        get_run_logger().error("%s", message)
    return Failed(message=message, data=exc)
