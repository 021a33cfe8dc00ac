"""solo.gateway.validation: big specs are checked in a worker process, so compiling a tenant's source
never holds the gateway's event loop (compile() keeps the GIL for its whole run)."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from solo.config import LimitsConfig
from solo.core.spec import ServiceSpec, validate_spec
from solo.errors import InvalidRequest
from solo.gateway.validation import INLINE_BYTES, SpecValidator

LIMITS = LimitsConfig(max_source_bytes=4 << 20)
BIG = "class Big:\n    def hi(self):\n        return 1\n" + "x = 1\n" * 300_000  # ~1.8 MiB, ~1 s to compile


async def longest_stall(work) -> tuple[float, object]:
    """Run `work()` while a ticker measures the longest the loop went without running it."""
    stalls, done = [0.0], asyncio.Event()

    async def tick():
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now
    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(0.05)
    try:
        result = await work()
    finally:
        done.set()
        await ticker
    return max(stalls), result


def test_a_big_source_is_compiled_outside_the_gateways_loop():
    async def scenario():
        validator = SpecValidator()
        spec = ServiceSpec(name="big", source=BIG, filename="big.py")
        try:
            await validator.validate(ServiceSpec(name="warm", source=BIG[:INLINE_BYTES + 10].rsplit("\n", 1)[0]
                                                 + "\n", filename="w.py"), LIMITS, 0.0)  # starts the worker

            async def inline():
                return validate_spec(spec, LIMITS, 0.0)
            blocked, expected = await longest_stall(inline)
            stalled, checked = await longest_stall(lambda: validator.validate(spec, LIMITS, 0.0))
            assert checked == expected
            assert [p.pid for p in validator._pool._processes.values()] != [os.getpid()]
            assert stalled < blocked / 2, (stalled, blocked)  # inline holds the loop for the whole compile
        finally:
            validator.close()
    asyncio.run(scenario())


def test_errors_of_a_big_source_are_as_clear_as_inline_and_small_specs_start_no_process():
    async def scenario():
        validator = SpecValidator()
        try:
            assert (await validator.validate(ServiceSpec(name="small", source="class A:\n    pass\n"), LIMITS, 0.0)
                    ).name == "small"
            assert validator._pool is None
            broken = ServiceSpec(name="big", source=BIG + "def broken(:\n", filename="big.py")
            with pytest.raises(InvalidRequest, match=r"syntax error in big\.py, line 300004"):
                await validator.validate(broken, LIMITS, 0.0)
        finally:
            validator.close()
    asyncio.run(scenario())
