"""The registry's events as rows for the event-log actor, the single sequencer."""
from __future__ import annotations

from solo.events.redact import redact
from solo.registry.state import Event


def event_rows(events: list[Event], who: dict, last_crash: dict) -> tuple[list[dict], dict]:
    """Rows for the log. Events caused by a crash point at it: in the same append by position
    (`cause_index`, resolved by the log), else by the id remembered in `last_crash`.
    Returns the rows and, per service, the position of a crash in them."""
    rows, crash_at = [], {}
    for index, e in enumerate(events):
        key = (e.tenant, e.subject)
        by = who if e.who is None else e.who
        row = {"tenant": e.tenant, "type": e.type, "subject": e.subject, "payload": redact(e.payload),
               "principal": by.get("principal", "solo"), "correlation_id": by.get("request_id", "")}
        if e.type == "service.crashed":
            crash_at[key] = index
        elif e.after_crash and key in crash_at:
            row["cause_index"] = crash_at[key]
        elif e.after_crash and key in last_crash:
            row["causation_id"] = last_crash[key]
        rows.append(row)
    return rows, crash_at
