"""Ticker: streaming results. Generator methods stream one item at a time.

    solo deploy examples/ticker.py
    solo call ticker ticks '{"n": 3}' --stream
    solo call ticker countdown '[3]' --stream
"""
import asyncio
import time

import solo


class Ticker(solo.Service):
    async def ticks(self, n: int = 5, interval: float = 0.1):
        for i in range(n):
            yield {"tick": i, "time": time.time()}
            await asyncio.sleep(interval)

    def countdown(self, start: int):
        yield from range(start, 0, -1)
        yield "liftoff"
