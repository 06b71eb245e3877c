"""What to do next after a run or a `settle`: one decision table, rendered by the terminal, `--json`, the
Prefect report and the alerts (they read `RunSummary.advice`, never compose commands of their own).

The table (first row that matches):

| the run ended | advice, in order |
|---|---|
| completed | nothing |
| held (guards or deletes) | the command that accepts it |
| with batches in doubt (sent, no definite answer), of this run or still unsettled of an earlier one | `settle RUN --check` for each such run (reads the users back from Braze and decides by the counts), then the plain resume |
| interrupted or pending without doubt (5xx, Braze down, a 302, a kill) | the plain resume |

`--in-doubt resend` (or `settle --resend`) is never advised by a run: it is advised by `settle --check` only
for the batches it could not decide, naming them and the duplicates it may cause (`after_settle`).
A deployment run's decision forms follow the same table (flows/decisions.py `settle_in_doubt`): settle or hold;
then delivered, resend or hold only for the batches the check could not decide.
"""

from __future__ import annotations

from braze_migrate.summary import AdviceStep as Step
from braze_migrate.summary import RunStatus, RunSummary
from connectors.states import Outcome


def base_command(summary: RunSummary) -> str | None:
    """The plain command that resumes the run (never with `--in-doubt resend`)."""
    if not summary.resume_command:
        return None
    return summary.resume_command.replace(" --in-doubt resend", "")


def with_advice(summary: RunSummary) -> RunSummary:
    """The summary with its `advice` filled by the table."""
    return summary.model_copy(update={"advice": advise(summary)})


def advise(summary: RunSummary) -> list[Step]:
    """The steps for a finished run, by the table above."""
    s = summary
    resume = base_command(s)
    if s.status is RunStatus.COMPLETED or resume is None:
        return []
    if s.status is RunStatus.HELD:
        return [Step(command=resume, why="accepts what held the run (" + (s.message or "held").split(":")[0] + ")")]
    doubt = [b for b in s.in_doubt if "held as pending" in b.action]  # commit/accounting.py in_doubt_batches
    # An earlier run's events and purchases still held in doubt are pending in this run too (a plain resume
    # before its settle): settling it comes first, or every later run would only advise itself again.
    steps: list[Step] = [
        Step(command=f"braze-migrate settle {run_id} --check --state {s.state}",
             why=(f"{count} events and purchases of run {run_id} are still held in doubt (they may have landed): "
                  "reads their users back from Braze and settles what the counts decide"))
        for run_id, count in sorted(s.unsettled.items()) if run_id != s.run_id]
    if doubt:
        events = sum(b.events for b in doubt)
        purchases = sum(b.purchases for b in doubt)
        steps.append(Step(
            command=f"braze-migrate settle {s.run_id} --check --state {s.state}",
            why=(f"{len(doubt)} batch(es) in doubt ({events} events, {purchases} purchases may have landed): "
                 "reads their users back from Braze and settles what the counts decide")))
    if steps:
        steps.append(Step(command=resume, why="sends what settle found missing and the rows still pending"))
        return steps
    return [Step(command=resume, why=("sends the batches never sent" if s.status is RunStatus.INTERRUPTED
                                      else "sends the rows still pending (nothing is in doubt: no duplicate)"))]


def after_settle(run_id: str, state: str, undecided: list[int], in_doubt: dict[int, tuple[int, int]]) -> list[Step]:
    """After `settle --check`: for the batches the counts could not decide, the two explicit choices, naming
    them and how many duplicates resending may cause; nothing when every batch was decided."""
    if not undecided:
        return []
    batches = " ".join(map(str, undecided))
    events = sum(in_doubt.get(b, (0, 0))[0] for b in undecided)
    purchases = sum(in_doubt.get(b, (0, 0))[1] for b in undecided)
    return [
        Step(command=f"braze-migrate settle {run_id} --delivered {batches} --state {state}",
             why="if Braze has them (check a few users in the dashboard): never sent again"),
        Step(command=f"braze-migrate settle {run_id} --resend {batches} --state {state}",
             why=(f"if Braze does not have them: the next run sends them once; if it had them, up to {events} "
                  f"events and {purchases} purchases become duplicates")),
    ]


def next_line(summary: RunSummary, every_step: bool = False) -> str | None:
    """The one line of a run that did not complete: what is left and the table's first step (`every_step`: each
    step, for a Prefect state message and its alert, which are all an operator may read). None: completed."""
    s = summary
    if s.status is RunStatus.COMPLETED:
        return None
    if s.status is RunStatus.HELD:
        return s.message or "held"
    what = (f"{s.total(Outcome.PENDING)} rows pending" if s.status is RunStatus.INCOMPLETE
            else "stopped before every batch was sent")
    steps = [step.command for step in s.advice] or ([s.resume_command] if s.resume_command else [])
    if not steps:
        return f"{s.status}: {what}"
    return f"{s.status}: {what}; next: " + (", then ".join(steps) if every_step else steps[0])


# The CLI's words for "run it again to resume" (the one-line errors: connectors/state/private.py, ...), and a
# deployment run's: in Prefect there is no command, the run resumes by Retry or by a new run of the deployment
# with the same parameters. One table, rendered per surface: the CLI prints the text as it is, `for_prefect`
# renders it for a flow run's logs, state message and alert (flows/decisions.py `one_line`).
RESUME_WORDS = (
    ("then run the same command", "then run the deployment again with the same parameters (or press Retry)"),
    ("run the same command to resume", "run the deployment again with the same parameters (or press Retry)"),
    ("the same command then resumes", "a new run of the deployment with the same parameters (or Retry) then resumes"),
    ("the same command resumes", "a new run of the deployment with the same parameters (or Retry) resumes"),
)


def for_prefect(text: str) -> str:
    """A CLI text as a deployment run says it: "the same command" becomes Retry or a new run of the deployment."""
    for cli, prefect in RESUME_WORDS:
        text = text.replace(cli, prefect)
    return text


def render(steps: list[Step] | list[dict]) -> list[str]:
    """The steps as lines, numbered when there are several."""
    steps = [s if isinstance(s, Step) else Step.model_validate(s) for s in steps]
    if len(steps) == 1:
        return [f"next: {steps[0].command}  ({steps[0].why})"]
    return [f"next {i}: {s.command}  ({s.why})" for i, s in enumerate(steps, 1)]
