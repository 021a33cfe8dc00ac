"""The host's log shipper (tags, batches, its bound while the registry does not take lines), the relay's shared
budget, and the registry's checks of what a host sends (no Ray)."""
from __future__ import annotations

import asyncio
import math

from solo.registry.logs import TenantRate, _line_of
from solo.runtime import logship
from solo.runtime.cell_process import OutputBudget
from solo.runtime.logship import LogShipper


def test_lines_are_tagged_by_the_host_and_sent_in_batches():
    sent: list[list] = []

    async def main():
        async def send(batch):
            sent.append(batch)

        shipper = LogShipper(send, "7", clock=lambda: 123.0)
        shipper.add("stdout", ["one", "two"])
        shipper.add("stderr", ["x" * 20_000])
        await shipper.flush(5)
        shipper.close()

    asyncio.run(main())
    lines = [line for batch in sent for line in batch]
    assert lines == [[123.0, "stdout", "7", "one"], [123.0, "stdout", "7", "two"],
                     [123.0, "stderr", "7", "x" * logship.MAX_TEXT]]


def refusing_registry():
    """A send() that raises until state["up"] is set, and the batches it took once up."""
    sent: list[list] = []
    state = {"up": False}

    async def send(batch):
        if not state["up"]:
            raise ConnectionError("the registry is restarting")
        sent.append(batch)
    return send, sent, state


def test_while_the_registry_refuses_at_most_max_pending_waits_and_the_loss_is_said(monkeypatch):
    monkeypatch.setattr(logship, "SEND_EVERY", 0.01)
    monkeypatch.setattr(logship, "RETRY_MAX", 0.02)
    send, sent, state = refusing_registry()

    async def main():
        shipper = LogShipper(send, "1")
        for _ in range(300):
            shipper.add("stdout", ["y" * 8000])  # 2.4 MB offered
            assert shipper.pending_bytes <= logship.MAX_PENDING
        state["up"] = True
        await shipper.flush(10)
        shipper.close()

    asyncio.run(main())
    lines = [line for batch in sent for line in batch]
    assert sum(len(line[3]) for line in lines if line[1] == "stdout") <= logship.MAX_PENDING
    assert all(sum(len(line[3]) for line in batch) <= logship.MAX_BATCH for batch in sent)
    notes = [line[3] for line in lines if line[1] == "solo"]
    assert len(notes) == 1 and notes[0].startswith("dropped ") and "lines of output" in notes[0]


def test_stdout_and_stderr_share_one_budget():
    now = [0.0]
    budget = OutputBudget(rate=100, burst=1000, clock=lambda: now[0])
    assert budget.take(600) and not budget.take(600)  # the second stream finds what the first left
    budget.dropped += 600
    assert budget.note()[0].startswith("dropped 600 bytes") and budget.note() == []
    now[0] = 10.0
    assert budget.take(1000)


def test_the_registry_checks_every_line_a_host_sends():
    now = 1_000_000.0
    assert _line_of([now - 5, "stdout", "1", "ok"], now) == (now - 5, "stdout", "1", "ok")
    assert _line_of([now, "stdin", "1", "x"], now) is None
    assert _line_of([now, "stdout", 1, "x"], now) is None
    assert _line_of("a string", now) is None and _line_of([now, "stdout", "1"], now) is None
    for odd in (math.nan, math.inf, True, "soon", now + 86_400):
        assert _line_of([odd, "stdout", "1", "x"], now)[0] == now
    when, stream, version, text = _line_of([now, "stderr", "v" * 500, "\x1b[31mred\x1b[0m\x00" + "z" * 20_000], now)
    assert len(version) == 64 and text.startswith("red") and len(text) <= 8192 and "\x00" not in text


def test_a_tenant_is_held_to_its_rate_and_what_is_over_is_counted_per_service():
    rate = TenantRate()
    taken = sum(rate.take(("acme", f"s{i % 5}"), 1000, 10_000) for i in range(100))
    assert taken == 40  # the burst: 4 s of 10 KB/s
    assert sum(rate.dropped.values()) == 60_000 and set(rate.dropped) == {("acme", f"s{i}") for i in range(5)}
    assert rate.take(("other", "s"), 1000, 10_000)  # another tenant has its own
    assert all(rate.take(("acme", "s"), 10**9, 0) for _ in range(3))  # 0 = no limit


def test_the_host_pauses_as_long_as_the_registry_asks_within_bounds(monkeypatch):
    monkeypatch.setattr(logship, "SEND_EVERY", 0.01)
    sent_at: list[float] = []

    async def main():
        loop = asyncio.get_running_loop()

        async def send(batch):
            sent_at.append(loop.time())
            return {"kept": len(batch), "pause": 0.3}

        shipper = LogShipper(send, "1")
        shipper.add("stdout", ["a"])
        await asyncio.sleep(0.05)
        shipper.add("stdout", ["b"])  # waits for the pause the registry asked for
        while len(sent_at) < 2:
            await asyncio.sleep(0.01)
        shipper.close()

    asyncio.run(main())
    assert sent_at[1] - sent_at[0] >= 0.29
    assert LogShipper._pause({"pause": 1e9}) == logship.PAUSE_MAX
    for odd in (None, {"pause": "x"}, {"pause": float("nan")}, {"pause": True}, {"pause": -3}):
        assert LogShipper._pause(odd) == logship.SEND_EVERY


def test_the_registry_asks_for_longer_pauses_when_many_hosts_send(monkeypatch):
    from types import SimpleNamespace

    from solo.registry import logs

    clock = [100.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    registry = SimpleNamespace()
    pause = lambda: logs.LogsMixin._append_pause(registry)  # noqa: E731
    assert pause() == 0.5
    for _ in range(999):  # 1,000 batches in the first second: five times the target
        clock[0] += 0.001
        pause()
    clock[0] += 0.01
    assert pause() >= 0.5 * 4  # hosts now send a fifth as often, in bigger batches
    for _ in range(10):  # a quiet second
        clock[0] += 0.1
        pause()
    clock[0] += 0.1
    assert pause() == 0.5


def test_empty_lines_count_too_so_a_flood_of_newlines_is_bounded(monkeypatch):
    monkeypatch.setattr(logship, "RETRY_MAX", 0.02)
    send, sent, state = refusing_registry()

    async def main():
        shipper = LogShipper(send, "1")
        for _ in range(100):
            shipper.add("stdout", [""] * 10_000)  # a million empty lines
        assert len(shipper.pending) <= logship.MAX_PENDING // logship.LINE_COST
        state["up"] = True
        await shipper.flush(10)
        shipper.close()

    asyncio.run(main())
    assert all(len(batch) <= logship.MAX_BATCH // logship.LINE_COST + 1 for batch in sent)
    assert sum(len(batch) for batch in sent) <= logship.MAX_PENDING // logship.LINE_COST + 1
