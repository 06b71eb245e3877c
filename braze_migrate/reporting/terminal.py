"""The run summary as a person reads it at the end of a run, in a terminal (the Prefect report renders the same
RunSummary in flows/artifacts.py)."""

from __future__ import annotations

from braze_migrate.run.advice import render as render_advice
from braze_migrate.summary import RunSummary


def render_text(summary: RunSummary | dict) -> str:
    """The human summary printed at the end of a run (from the run, or from its `--json` object)."""
    s = RunSummary.coerce(summary)
    lines = [
        f"run {s.run_id} ({s.kind} of {s.source}): {s.status.upper()}"
        + (f", UNCHANGED since run {s.unchanged_since}: nothing sent" if s.unchanged_since else ""),
        (f"  requests {s.requests}  batches {s.batches}  retries {s.retries}  "
         f"throttled (429) {s.throttled}  in doubt {len(s.in_doubt)}  duration {s.duration_s:.1f}s"),
    ]
    lines += table(["dataset", "read", "acked", "rejected", "unchanged", "pending", "bad cells"],
                   [[name, b.read, b.acknowledged, b.rejected, b.unchanged, b.pending, b.rejected_cells]
                    for name, b in s.datasets.items()])
    lines.append(f"  data points sent {s.data_points.sent} (a full resend would cost {s.data_points.full_resend}); "
                 f"requests {s.requests} (a full resend needs at least {s.requests_full_resend})")
    for b in s.in_doubt:
        lines.append(f"  in doubt: batch {b.batch_no} ({b.events} events, {b.purchases} purchases): {b.action}")
    if s.deletes:  # braze_migrate/ops/deletes.py
        d = s.deletes
        lines.append(f"  user deletes: {len(d['deleted_ids'])} deleted, {len(d['pending_ids'])} pending"
                     + (" (held by the guard)" if d["held"] else "")
                     + (f": {', '.join(d['deleted_ids'][:20])}" + (" ..." if len(d["deleted_ids"]) > 20 else "")
                        if d["deleted_ids"] else ""))
    for c in s.catalogs or []:  # braze_migrate/ops/catalogs.py
        lines.append(catalog_line(c))
    if s.waited_s:
        lines.append(f"  waited {s.waited_s:.1f}s (for the export or a decision; not in the duration)")
    if s.export:
        lines.append(f"  export: {s.export}")
    for d in s.decisions or []:
        lines.append(f"  decision: {d['asked']}: {d['decision'] or 'nobody answered'} by {d['by']} at {d['at']}")
    if s.identities:  # braze_migrate/ops/identities.py
        lines.append("  " + identity_line(s.identities))
    lines.append(f"  rejects file: {s.rejects_file} ({s.rejects} entries)")
    for note in s.notes:
        lines.append(f"  note: {note}")
    lines += [f"  {line}" for line in advice_lines(s)]
    return "\n".join(lines)


def catalog_line(c: dict) -> str:
    """One catalog's sync in a line (terminal and Prefect run report)."""
    return (f"  catalog {c['name']}: {c['created']} created, {c['updated']} edited, {c['deleted']} deleted, "
            f"{c['unchanged']} unchanged, {c['gone_kept']} gone and kept, {c['pending']} pending; "
            f"{c['requests']} requests" + (f" (held: {c['held']})" if c["held"] else ""))


def table(headers: list[str], rows: list[list]) -> list[str]:
    """Lines of a plain text table, indented two spaces: the first column left-aligned, numbers right-aligned
    with thousands separators, each column as wide as its widest cell plus two spaces, so large numbers never
    run together."""
    cells = [[str(c) if i == 0 else f"{c:,}" if isinstance(c, int) else str(c) for i, c in enumerate(r)] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(headers, *cells)]
    return ["  " + "".join(f"{x:<{w}}" if i == 0 else f"{x:>{w + 2}}" for i, (x, w) in enumerate(zip(r, widths)))
            for r in [headers, *cells]]


def render_plan(result: dict) -> str:
    """What `braze-migrate plan` prints: the plan's totals and a row per dataset (braze_migrate/run/dryrun.py)."""
    from braze_migrate.plan import guards

    lines = [
        (f"plan for {result['source']}: {result['requests']:,} requests, {result['objects']:,} objects, "
         f"{result['data_points']:,} data points (a full resend: {result['full_resend']['requests']:,} requests, "
         f"{result['full_resend']['data_points']:,} data points)"),
    ]
    lines += table(["dataset", "read", "to send", "points", "unchanged", "held", "bad rows", "bad cells"],
                   [[name, d["read"], d["to_send"], d["data_points"], d["unchanged"], d["held"], d["rejected_rows"],
                     d["rejected_cells"]] for name, d in result["datasets"].items()])
    for feature, counts in (result.get("user_model") or {}).items():
        if counts.get("objects"):
            lines.append(f"  {feature}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if result.get("deletes"):
        d = result["deletes"]
        lines.append(f"  user deletes: {d['users']} users in {d['requests']} requests"
                     + (" (the guard would hold them: --allow-mass-delete)" if d["held_by_guard"] else ""))
    for c in result.get("catalogs") or []:
        lines.append(f"  catalog {c['name']}: {c['requests']} requests ({c['creates']} items to create, {c['edits']} to "
                     f"edit, {c['deletes']} to delete, {c['unchanged']} unchanged, {c['gone_kept']} gone and kept); "
                     "0 data points (catalog items are not billed as data points)")
    if result.get("identities"):
        lines += identity_plan_lines(result["identities"])
    if result.get("guards") is not None:
        report = guards.GuardReport.from_dict(result["guards"])
        lines.append(guards.render_text(report))
        if report.held:
            lines.append(f"  a run would be held: {report.message()}")
    lines.append(f"  payloads: {result['payloads']} (nothing was sent)")
    return "\n".join(lines)


def advice_lines(s: RunSummary) -> list[str]:
    """What to do next (the run's advice, braze_migrate/run/advice.py), else the plain resume."""
    if s.advice:
        return render_advice(s.advice)
    return [f"to resume: {s.resume_command}"] if s.resume_command else []


def identity_line(d: dict) -> str:
    """The identity requests of a run in one line: done, pending and refused per kind, requests per endpoint."""
    parts = [f"{kind} {d['done'].get(kind, 0)} done" + (f", {d['pending'][kind]} pending" if d["pending"].get(kind) else "")
             + (f", {d['refused'][kind]} refused" if d["refused"].get(kind) else "")
             for kind in ("identify", "rename", "remove")
             if d["done"].get(kind) or d["pending"].get(kind) or d["requested"].get(kind)]
    requests = ", ".join(f"{k} {v}" for k, v in d["requests"].items())
    return ("identity requests: " + "; ".join(parts) + (f" (requests: {requests})" if requests else "")
            + (" (held by the guard)" if d["held"] else ""))


def identity_plan_lines(preview: dict) -> list[str]:
    """What identifies the users of a plan (braze_migrate/run/identities.py): per dataset, the rows named by each
    identifier, and whether alias objects may create their user."""
    lines = []
    for name, c in preview["datasets"].items():
        if c["user_alias"] or c["email"] or c["phone"] or c["several"]:
            lines.append(f"  identities of {name}: external_id {c['external_id']}, alias {c['user_alias']}, "
                         f"email {c['email']}, phone {c['phone']}, none {c['none']}; {c['several']} rows carry "
                         "several identifiers (precedence: external_id, alias, email, phone)")
    if lines:
        create = "create their user" if preview["create_alias_users"] else "update existing users only (Braze's default)"
        lines.append(f"  alias objects {create}; email and phone objects create their user when Braze has none")
    return lines
