"""Numbers a cell answers its host are bounded before the host uses them (no Ray)."""
from __future__ import annotations

import math

from solo.runtime.host import _count, _number


def test_counts_and_numbers_from_a_cell_are_bounded():
    assert [_count(v) for v in (0, 7, 2 ** 63 - 1)] == [0, 7, 2 ** 63 - 1]
    assert [_count(v) for v in (-1, 2 ** 63, 10 ** 400, True, 1.5, "3", None)] == [0] * 7
    assert [_number(v, 9.0) for v in (0, 1.5, -2, 10 ** 20)] == [0.0, 1.5, -2.0, 1e20]
    assert [_number(v, 9.0) for v in (math.inf, -math.inf, math.nan, 10 ** 400, True, "1")] == [9.0] * 6


def test_a_cells_control_answer_carries_only_the_codes_a_service_may_give():
    """Code in the cell can answer load, health or swap with any error: INTERNAL, UNAUTHENTICATED or
    PERMISSION_DENIED from a deploy would be Solo's words, not the service's."""
    from solo.errors import NotFound, ServiceFailed
    from solo.runtime.cellwire import error_from

    for code in ("INTERNAL", "UNKNOWN", "UNAUTHENTICATED", "PERMISSION_DENIED", "x" * 100):
        error = error_from({"code": code, "message": "m", "exception_type": "T"}, strict=True)
        assert isinstance(error, ServiceFailed) and code[:40] in error.message, code
    assert isinstance(error_from({"code": "NOT_FOUND", "message": "m"}, strict=True), NotFound)
    assert error_from({"code": "PERMISSION_DENIED", "message": "m"}).code == "PERMISSION_DENIED"  # from the host
