"""Checking deploy and swap specs without stalling the gateway.

`validate_spec` compiles the service's source and parses its config. compile() holds the GIL for
its whole run (about 0.5 s for 1 MiB of source on a 2-core machine), so a thread would not help:
every other tenant's calls would wait behind it. Small specs (most) are checked inline, where
that costs a few milliseconds; bigger ones go to one worker process, started on first use, with
a deadline and a bounded number waiting.
"""
from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from solo.config import LimitsConfig
from solo.core.spec import ServiceSpec, validate_spec
from solo.errors import InvalidRequest, Overloaded

INLINE_BYTES = 16 * 1024  # source + config checked on the gateway's loop (compiling this much takes ~10 ms)
CHECK_SECONDS = 20.0  # a check that takes longer is given up (the worker is replaced)
MAX_WAITING = 8  # large specs being checked or waiting at once; more are RESOURCE_EXHAUSTED


class SpecValidator:
    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._waiting = 0

    async def validate(self, spec: ServiceSpec, limits: LimitsConfig, default_num_cpus: float) -> ServiceSpec:
        if len(spec.source) + len(spec.config_json) <= INLINE_BYTES:
            return validate_spec(spec, limits, default_num_cpus)
        if self._waiting >= MAX_WAITING:
            error = Overloaded(f"{MAX_WAITING} large deploys are being checked already; retry in a moment")
            error.retry_after = 1.0
            raise error
        self._waiting += 1
        try:
            pool = self._pool or self._start()
            future = asyncio.wrap_future(pool.submit(validate_spec, spec, limits, default_num_cpus))
            return await asyncio.wait_for(future, CHECK_SECONDS)
        except TimeoutError:
            self.close()
            raise InvalidRequest(f"checking {spec.filename or 'the source'} took longer than {CHECK_SECONDS:g} s; "
                                 "send a smaller or simpler source") from None
        except BrokenProcessPool:
            self.close()
            raise InvalidRequest(f"{spec.filename or 'the source'} could not be checked (the checking process "
                                 "ended); send a smaller or simpler source") from None
        finally:
            self._waiting -= 1

    def _start(self) -> ProcessPoolExecutor:
        # spawn, never fork: the gateway's process has gRPC and Ray threads
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):  # a check that hangs is not waited for
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
