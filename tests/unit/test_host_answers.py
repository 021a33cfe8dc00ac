"""Numbers a cell answers its host are bounded before the host uses them (no Ray)."""
from __future__ import annotations

import math

from solo.runtime.host import _count, _number


def test_counts_and_numbers_from_a_cell_are_bounded():
    assert [_count(v) for v in (0, 7, 2 ** 63 - 1)] == [0, 7, 2 ** 63 - 1]
    assert [_count(v) for v in (-1, 2 ** 63, 10 ** 400, True, 1.5, "3", None)] == [0] * 7
    assert [_number(v, 9.0) for v in (0, 1.5, -2, 10 ** 20)] == [0.0, 1.5, -2.0, 1e20]
    assert [_number(v, 9.0) for v in (math.inf, -math.inf, math.nan, 10 ** 400, True, "1")] == [9.0] * 6
