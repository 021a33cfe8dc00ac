"""KV: a small key-value store with byte values and a scan.

    solo deploy examples/kv.py
    solo call kv put '{"key": "a", "value": "1"}'
    solo call kv get '{"key": "a"}'          # -> "1"
    solo call kv keys '{"prefix": ""}'       # -> ["a"]
"""
import solo


class KV(solo.Service):
    def __init__(self):
        self.data = {}

    def put(self, key: str, value) -> bool:
        created = key not in self.data
        self.data[key] = value
        return created

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def keys(self, prefix: str = "") -> list:
        return sorted(k for k in self.data if k.startswith(prefix))

    def size(self) -> int:
        return len(self.data)

    def health(self) -> bool:
        return isinstance(self.data, dict)

    def snapshot(self):
        return self.data

    def restore(self, state):
        self.data = dict(state)
