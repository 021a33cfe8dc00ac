"""Spec files (`<data-dir>/specs/<tenant>/<service>/`) hold only what a service still needs: refused
deploys (quota, already exists, bad spec, a failed start) leave nothing behind, a replaced version's
spec goes, and a removed service's folder goes with it. Real Solo, real Ray, real files."""
from __future__ import annotations

import pytest

from solo import AlreadyExists, InvalidRequest, Overloaded, SoloClient, SoloError
from tests.conftest import source


def code(n: int, crash: bool = False) -> str:
    return source(f"""
        class Svc:
            def __init__(self):
                {"raise RuntimeError('no start')" if crash else "pass"}

            def n(self):
                return {n}
    """)


@pytest.fixture(scope="module")
def clients(solo, operator):
    with SoloClient(solo.address, operator.mint_token("specco")) as specco, \
            SoloClient(solo.address, operator.mint_token("quotaco")) as quotaco:
        yield specco, quotaco


def files(solo) -> dict[str, int]:
    specs = solo.supervisor.config.data_dir / "specs"
    return {p.relative_to(specs).as_posix(): p.stat().st_size for tenant in ("specco", "quotaco")
            for p in (specs / tenant).rglob("*") if p.is_file()}


def test_refused_and_failed_deploys_leave_no_spec_file(solo, clients, name):
    specco, quotaco = clients
    specco.deploy(code(0), name)
    quotaco.deploy(code(0), name, memory=200 << 20)
    before = files(solo)
    assert len([k for k in before if k.startswith((f"specco/{name}/", f"quotaco/{name}/"))]) == 2, before
    try:
        for n in range(1, 5):
            with pytest.raises(AlreadyExists):  # another spec, no --replace
                specco.deploy(code(n), name)
            with pytest.raises(Overloaded, match="quota max_memory_bytes"):
                quotaco.deploy(code(n), f"{name}-more", memory=200 << 20)
            with pytest.raises(InvalidRequest):  # does not compile
                specco.deploy(code(n) + "\ndef (:\n", f"{name}-bad")
            with pytest.raises(SoloError):  # its first start fails
                specco.deploy(code(n, crash=True), f"{name}-crash{n}")
            with pytest.raises(SoloError):  # a replacement that does not start: the old version keeps serving
                specco.deploy(code(n, crash=True), name, replace=True)
            assert files(solo) == before, n
        assert specco.call(name, "n") == 0
        failed = specco.get(f"{name}-crash1")
        assert failed["state"] == "FAILED" and "no start" in failed["message"]  # still shown, with why
        specco.deploy(code(9), name, replace=True)  # the replaced version's spec goes
        after = files(solo)
        assert len(after) == len(before) and after != before, after
        assert specco.call(name, "n") == 9
    finally:
        for client, service in [(specco, f"{name}-crash{n}") for n in range(1, 5)] + [(specco, name), (quotaco, name)]:
            try:
                client.stop(service, remove=True)
            except SoloError:  # not deployed (an earlier step failed)
                pass
    specs = solo.supervisor.config.data_dir / "specs"
    assert not (specs / "specco" / name).exists() and not (specs / "quotaco" / name).exists()
