"""Counter, version 2: the same state, plus a history of the last changes. Swap it in while
callers keep counting; the value carries over (snapshot/restore), nothing is lost or counted twice.

    solo deploy examples/counter.py
    solo call counter incr '{"by": 2}'      # -> 2
    solo swap counter examples/counter_v2.py
    solo call counter incr                  # -> 3: the state came along
    solo call counter history               # -> [3]
    solo rollback counter                   # back to version 1, with the value
"""
import solo


class Counter(solo.Service):
    def __init__(self):
        self.value = self.context.config.get("start", 0)
        self.changes: list[int] = []

    def incr(self, by: int = 1) -> int:
        self.value += by
        self.changes = (self.changes + [self.value])[-10:]
        return self.value

    def get(self) -> int:
        return self.value

    def history(self) -> list[int]:
        """The last ten values (new in version 2)."""
        return self.changes

    def reset(self) -> int:
        self.value = 0
        self.changes = []
        return self.value

    def snapshot(self):
        return {"value": self.value, "changes": self.changes}

    def restore(self, state):  # also takes version 1's snapshot, which has no "changes"
        self.value = state["value"]
        self.changes = state.get("changes", [])
