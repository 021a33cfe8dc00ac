"""How the registry writes its events: through the event-log actor, the single sequencer."""
from __future__ import annotations

from ray.exceptions import RayActorError, RayTaskError

from solo.errors import SoloError, Unavailable
from solo.registry.state import Event
from solo.runtime.event_log_actor import find_event_log


def event_rows(events: list[Event], who: dict, last_crash: dict) -> tuple[list[dict], dict]:
    """Rows for the log. Events caused by a crash point at it: in the same append by position
    (`cause_index`, resolved by the log), else by the id remembered in `last_crash`.
    Returns the rows and, per service, the position of a crash in them."""
    rows, crash_at = [], {}
    for index, e in enumerate(events):
        key = (e.tenant, e.subject)
        row = {"tenant": e.tenant, "type": e.type, "subject": e.subject, "payload": e.payload,
               "principal": who.get("principal", "solo"), "correlation_id": who.get("request_id", "")}
        if e.type == "service.crashed":
            crash_at[key] = index
        elif e.after_crash and key in crash_at:
            row["cause_index"] = crash_at[key]
        elif e.after_crash and key in last_crash:
            row["causation_id"] = last_crash[key]
        rows.append(row)
    return rows, crash_at


class EventSink:
    def __init__(self, namespace: str):
        self.namespace = namespace
        self._actor = None

    async def append(self, rows: list[dict]) -> tuple[int, int]:
        actor = self._actor or find_event_log(self.namespace)
        if actor is None:
            raise Unavailable("the event log is not running; the operation was not recorded and did not happen")
        self._actor = actor
        try:
            return await actor.append.remote(rows)
        except RayTaskError as exc:
            if isinstance(exc.cause, SoloError):
                raise exc.cause from None
            raise Unavailable(f"the event log failed ({exc.cause!r}); the operation did not happen") from None
        except RayActorError:
            self._actor = None
            raise Unavailable("the event log is unavailable (restarting?); the operation was not recorded "
                              "and did not happen; retry shortly") from None


__all__ = ["EventSink", "event_rows"]
