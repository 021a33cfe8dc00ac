"""Counter: a stateful service whose state survives hot swaps (snapshot/restore).

    solo deploy examples/counter.py
    solo call counter incr '{"by": 2}'      # -> 2
    solo call counter get                   # -> 2
"""
import solo


class Counter(solo.Service):
    def __init__(self):
        self.value = self.context.config.get("start", 0)

    def incr(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def get(self) -> int:
        return self.value

    def reset(self) -> int:
        self.value = 0
        return self.value

    def snapshot(self):
        return {"value": self.value}

    def restore(self, state):
        self.value = state["value"]
