"""Events read back and acted on: hand-made bad rows are skipped (one warning), never a reason to stop.

Every reader that acts on events (the revocation list, the registry's fold and checkpoint, discovery
grants, the spec store, the event log's retention pin) gets the same kinds of bad rows: a payload
that is not JSON, a JSON list, missing keys, wrong types, huge numbers, null bytes.
"""
from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace

import pytest

from solo.events import read_events
from solo.events.log import EventLog
from solo.events.readback import BadRow, Skipped, payload, revocation_id
from solo.gateway.tokens import TokenService
from solo.registry.rebuild import CHECKPOINT_FILE, ServiceView, fold, load_checkpoint, load_grants, write_checkpoint
from solo.security.verifier import RevocationSet

GOOD_ID = "ab" * 64
OTHER_ID = "cd" * 64
BAD_PAYLOADS = [
    "not json", "{", '{"revocation_id": ', "[1, 2]", '"text"', "42", "null", "true",
    "1" * 5000,                   # digits past Python's int conversion limit
    "[" * 100_000 + "]" * 100_000,  # nesting past the recursion limit
    "\x00\x00", '{"a": "\x00"}',
]


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- the checks themselves ------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", BAD_PAYLOADS[:-1] + [b"{}", 3, ["x"]])
def test_payload_is_a_json_object_or_a_bad_row(raw):
    with pytest.raises(BadRow):
        payload(raw)


def test_payload_accepts_solo_s_own_shapes():
    assert payload(None) == {} and payload('{"a": 1}') == {"a": 1} and payload({"b": 2}) == {"b": 2}


@pytest.mark.parametrize("value", [None, 7, ["x"], {"x": 1}, "AB" * 64, "ab" * 63, "ab" * 65, "ab" * 63 + "\x00a",
                                   "zz" * 64, GOOD_ID + "\n"])
def test_a_revocation_id_in_another_shape_is_refused(value):
    with pytest.raises(BadRow):
        revocation_id({"revocation_id": value})
    assert revocation_id({"revocation_id": GOOD_ID, "reason": 5}) == GOOD_ID  # other fields do not matter


def test_skipped_rows_make_one_warning_per_report_and_followers_one_a_minute(caplog):
    now = [0.0]
    follower = Skipped("following", logging.getLogger("t"), every=60.0, clock=lambda: now[0])
    for i in range(1_000_000):
        follower.skip(f"event {i}", "bad")
    follower.report()
    follower.skip("event x", "bad")
    follower.report()  # within the minute: kept for later
    now[0] = 61.0
    follower.report()
    messages = warnings(caplog)
    assert len(messages) == 2, messages
    assert "skipped 1000000 malformed row(s) (first: event 0: bad)" in messages[0]
    assert "skipped 1 malformed" in messages[1] and follower.total == 1_000_001


# -- the registry's fold ---------------------------------------------------------------------------------
def ev(i, kind, subject="kv", tenant="acme", raw=None, **fields):
    return {"id": i, "time": float(i), "tenant": tenant, "type": kind, "subject": subject,
            "payload": raw if raw is not None else json.dumps(fields)}


def good_history():
    return [ev(1, "service.deploying", spec="f1", version="1", generation=1),
            ev(2, "service.started", host="solo-host-1", pid=11, restarts=0),
            ev(3, "discovery.granted", service="kv", to_tenant="beta")]


BAD_SERVICE_ROWS = [
    *[ev(100 + i, "service.crashed", raw=raw) for i, raw in enumerate(BAD_PAYLOADS)],
    ev(200, "service.failed", reason=5),                                   # wrong type
    ev(201, "service.stopped", tenant=None),                                # no tenant
    ev(202, "service.stopped", subject="kv\x00"),                           # null byte in the key
    ev(203, "service.stopped", tenant="ACME"), ev(204, "service.stopped", subject="../../etc"),
    ev(205, "service.started", pid=10 ** 40),                               # huge number
    ev(206, "service.started", pid=-1), ev(207, "service.started", pid=True), ev(208, "service.started", pid="11"),
    ev(209, "service.restarting", attempt=1e300),
    ev(210, "service.started", host="h\x00"), ev(211, "service.started", host=["h"]),
    ev(212, "service.deploying", spec=7, version="9", generation=9),
    ev(213, "service.deploying", spec="f9", version="9", generation="9"),
    ev(214, "service.deploying", spec="f9", version="v 9", generation=9),
    ev(215, "service.deploying", spec="f9", version="9", generation=9, replaces=["1"]),
    ev(216, "service.rolled_back", spec="f0", version="0", generation=-3),
    {"id": 217, "time": 1e300, "tenant": "acme", "type": "service.deploying", "subject": "kv",
     "payload": json.dumps({"spec": "f9", "version": "9", "generation": 9})},
    {"id": 218, "time": 1.0, "tenant": "acme", "type": None, "subject": "kv", "payload": "{}"},
    ev(219, "discovery.granted", raw="[]"), ev(220, "discovery.granted", service="kv"),
    ev(221, "discovery.granted", service="kv", to_tenant=5), ev(222, "discovery.grant_revoked", service=None,
                                                                to_tenant="beta"),
]


def test_fold_skips_every_malformed_row_and_applies_the_rest(caplog):
    grants: set = set()
    views = fold(good_history() + BAD_SERVICE_ROWS + [ev(300, "service.restarting", attempt=2)], {}, grants)
    view = views[("acme", "kv")]
    # none of the bad rows changed anything: still running where it started, generation 1
    assert (view.state, view.spec, view.version, view.generation, view.host, view.pid) == \
        ("RUNNING", "f1", "1", 1, "solo-host-1", 11)
    assert view.restarts == 2  # the good row after them was applied
    assert set(views) == {("acme", "kv")} and grants == {("acme", "kv", "beta")}
    messages = warnings(caplog)
    assert len(messages) == 1, messages  # one line for all of them
    assert f"skipped {len(BAD_SERVICE_ROWS) - 1} malformed row(s)" in messages[0]  # the row of type None is no event
    assert "\x00" not in messages[0]


def test_events_the_fold_does_not_act_on_are_not_checked(caplog):
    fold([ev(1, "service.swap_ready", raw="not json"), ev(2, "token.revoked", raw="[]"),
          ev(3, "discovery.granted", raw="[]")], {})  # grants not asked for
    assert warnings(caplog) == []


# -- the checkpoint --------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [
    "", "not json", "[]", "null", '{"services": []}', '{"last_id": "12", "services": []}',
    '{"last_id": -1, "services": []}', '{"last_id": 1e400, "services": []}', '{"last_id": true, "services": []}',
    '{"last_id": ' + "9" * 5000 + ', "services": []}', '{"last_id": 18446744073709551616, "services": []}',
    "\x00" * 10, "[" * 100_000])
def test_an_unusable_checkpoint_means_a_rebuild_from_the_whole_log(tmp_path, caplog, content):
    (tmp_path / CHECKPOINT_FILE).write_text(content)
    assert load_checkpoint(tmp_path) == (0, {})
    assert load_grants(tmp_path) == set()
    assert len(warnings(caplog)) == 1  # said once (load_grants leaves it to load_checkpoint)


def test_bad_checkpoint_entries_are_skipped_and_the_good_ones_kept(tmp_path, caplog):
    good = ServiceView("acme", "kv", spec="f1", version="1", generation=2, state="RUNNING", host="h", pid=3,
                       created_at=5.0, pending={"spec": "f2", "version": "2", "generation": 3})
    write_checkpoint(tmp_path, 40, {("acme", "kv"): good}, {("acme", "kv", "beta")})
    data = json.loads((tmp_path / CHECKPOINT_FILE).read_text())
    entry = data["services"][0]
    data["services"] += [
        None, [], "kv", {**entry, "tenant": 5}, {**entry, "name": "kv\x00"}, {**entry, "generation": "2"},
        {**entry, "pid": 10 ** 30}, {**entry, "wanted": "yes"}, {**entry, "state": "HACKED"},
        {**entry, "created_at": float("nan")}, {**entry, "created_at": 1e308}, {**entry, "pending": [1]},
        {**entry, "pending": {"spec": 5}}, {**entry, "message": {"a": 1}}, {**entry, "host": "a b"},
        {**entry, "name": "other", "unknown_field": 1},  # fields a later Solo may add are ignored
    ]
    data["grants"] += [None, "x", ["acme", "kv"], ["acme", "kv", 5], ["acme", "kv", "gamma"]]
    (tmp_path / CHECKPOINT_FILE).write_text(json.dumps(data))
    last_id, views = load_checkpoint(tmp_path)
    assert last_id == 40 and views[("acme", "kv")] == good
    assert set(views) == {("acme", "kv"), ("acme", "other")}
    assert load_grants(tmp_path) == {("acme", "kv", "beta"), ("acme", "kv", "gamma")}
    messages = warnings(caplog)
    assert len(messages) == 2, messages  # one for the services, one for the grants
    assert "skipped 15 malformed" in messages[0] and "skipped 4 malformed" in messages[1]


def test_a_checkpoint_whose_services_are_not_a_list_keeps_its_position(tmp_path, caplog):
    (tmp_path / CHECKPOINT_FILE).write_text('{"last_id": 7, "services": {"a": 1}, "grants": 3}')
    assert load_checkpoint(tmp_path) == (7, {})
    assert load_grants(tmp_path) == set()
    assert len(warnings(caplog)) == 2


# -- the spec store and the log's retention pin -----------------------------------------------------------
def test_the_spec_store_reads_only_fingerprints_and_survives_a_corrupt_file(tmp_path, caplog):
    from solo.core.spec import ServiceSpec
    from solo.registry.specs import SpecStore

    store = SpecStore(tmp_path / "specs")
    fingerprint = store.put("acme", ServiceSpec(name="kv", source="x = 1\n"))
    assert store.get(fingerprint, "acme", "kv").name == "kv"
    (tmp_path / "outside.json").write_text(json.dumps({"name": "evil", "source": "", "resources": {}}))
    for bad in ("../outside", "/etc/passwd", "", None, 5, fingerprint.upper(), fingerprint + "\x00"):
        assert store.get(bad, "acme", "kv") is None
    for tenant, name in (("..", "kv"), ("acme", "../../outside"), ("acme/..", "kv")):
        with pytest.raises(ValueError):
            store.get(fingerprint, tenant, name)
    for content in ("not json", "[]", '{"name": "kv"}', '{"name": "kv", "source": "", "resources": []}',
                    '{"name": "kv", "source": "", "resources": {}, "bogus": 1}'):
        (tmp_path / "specs" / "acme" / "kv" / f"{fingerprint}.json").write_text(content)
        assert store.get(fingerprint, "acme", "kv") is None
    assert len(warnings(caplog)) == 5


@pytest.mark.parametrize("content", ["not json", "[]", '{"last_id": null}', '{"last_id": "5"}', '{"last_id": -5}',
                                     '{"last_id": 1e999}', '{"last_id": ' + "9" * 5000 + "}", "[" * 100_000,
                                     '{"last_id": 10000000000000000000000}', '{"last_id": [5]}', '"x"'])
def test_the_log_keeps_everything_when_the_checkpoint_pin_is_unreadable(tmp_path, content):
    from solo.runtime.event_log_actor import EventLogActor

    checkpoint = tmp_path / CHECKPOINT_FILE
    checkpoint.write_text(content)
    actor = EventLogActor(str(tmp_path / "events"), checkpoint_file=str(checkpoint))
    assert actor._checkpointed() == 0  # keep every event; retention never drops what a rebuild may need
    checkpoint.write_text('{"last_id": 12}')
    assert actor._checkpointed() == 12


# -- the revocation list and the token listing ----------------------------------------------------------
BAD_REVOCATIONS = [*BAD_PAYLOADS, "{}", '{"revocation_id": null}', '{"revocation_id": 5}',
                   '{"revocation_id": ["%s"]}' % OTHER_ID, '{"revocation_id": {"id": "%s"}}' % OTHER_ID,
                   '{"revocation_id": "%s"}' % OTHER_ID.upper(), '{"revocation_id": "%s\\u0000"}' % OTHER_ID,
                   '{"revocation_id": "%s"}' % ("cd" * 5000)]


def forged_log(tmp_path, extra_rows=(), roll=False):
    """A real event log with a genuine revocation among forged rows, as an attacker could append them
    (`roll`: into a Parquet segment, whose statistics readers parse too)."""
    log = EventLog(tmp_path / "events")
    rows = [{"tenant": "alice", "type": "token.revoked", "subject": "x", "payload": raw} for raw in BAD_REVOCATIONS]
    rows.insert(len(rows) // 2, {"tenant": "alice", "type": "token.revoked", "subject": GOOD_ID[:16],
                                 "payload": json.dumps({"revocation_id": GOOD_ID, "reason": 17})})
    log.append(rows + list(extra_rows))
    if roll:
        log.roll()
    log.wal.close()
    return tmp_path


def token_service(data_dir, event_log=None):
    auth = SimpleNamespace(verifier=SimpleNamespace(revocations=RevocationSet()))
    return TokenService(data_dir, auth, event_log)


def test_loading_revocations_skips_forged_rows_and_keeps_the_real_one(tmp_path, caplog):
    tokens = token_service(forged_log(tmp_path))
    asyncio.run(tokens.load_revocations())
    assert tokens.revocations.revoked([GOOD_ID])  # the revoked token stays revoked
    assert not tokens.revocations.revoked([OTHER_ID]) and len(tokens.revocations) == 1
    messages = warnings(caplog)
    assert len(messages) == 1 and f"skipped {len(BAD_REVOCATIONS)} malformed" in messages[0], messages


def test_following_revocations_skips_forged_rows_and_warns_once(tmp_path, caplog):
    table = read_events(forged_log(tmp_path))

    class Log:
        def __init__(self):
            self.calls = 0
            self.done = asyncio.Event()

        async def since(self, after_id, limit, wait):
            self.calls += 1
            if self.calls <= 3:  # the same forged rows three times over: one warning, not three
                return table
            self.done.set()
            await asyncio.sleep(3600)

    async def run():
        log = Log()
        tokens = token_service(tmp_path, log)
        task = asyncio.ensure_future(tokens.follow_revocations(0))
        await asyncio.wait_for(log.done.wait(), 10)
        task.cancel()
        return tokens

    tokens = asyncio.run(run())
    assert tokens.revocations.revoked([GOOD_ID]) and len(tokens.revocations) == 1
    assert tokens.skipped.total == 3 * len(BAD_REVOCATIONS)
    assert len(warnings(caplog)) == 1


def test_the_log_refuses_times_no_reader_could_read_back(tmp_path):
    import pyarrow as pa

    from solo.errors import InvalidRequest
    from solo.events.log import check_group
    from solo.runtime.event_log_actor import EventLogActor

    actor = EventLogActor(str(tmp_path / "events"))
    for when in (1e12, -5, 1e300, float("nan"), "soon"):
        with pytest.raises(InvalidRequest, match="time"):
            asyncio.run(actor.append([{"tenant": "a", "type": "x", "time": when}]))
    for column in (pa.array([2 ** 62], pa.int64()), pa.array([-1], pa.int64()), pa.array([1.7e9]),
                   pa.array(["soon"])):
        with pytest.raises(ValueError, match="time"):
            check_group(pa.table({"tenant": ["a"], "type": ["x"], "time": column}))
    assert actor.log.last_id == 0
    check_group([{"tenant": "a", "type": "x", "time": 1.7e9}])
    check_group(pa.table({"tenant": ["a"], "type": ["x"], "time": pa.array([1_700_000_000_000_000], pa.int64())}))


@pytest.mark.parametrize("roll", [False, True])
def test_listing_and_looking_up_tokens_skip_malformed_minted_rows(tmp_path, caplog, monkeypatch, roll):
    import solo.events.log

    monkeypatch.setattr(solo.events.log, "MAX_TIME_US", 2 ** 62)  # files an older Solo let through
    good = {"revocation_id": GOOD_ID, "rights": ["invoke"], "expires_at": 2e9, "key_id": 1, "operator": False,
            "description": "ci"}
    minted = [{"tenant": "alice", "type": "token.minted", "subject": p.get("revocation_id", "x")[:16] if
               isinstance(p, dict) and isinstance(p.get("revocation_id"), str) else "x",
               "payload": json.dumps(p) if isinstance(p, dict) else p}
              for p in [good, *BAD_PAYLOADS, {**good, "rights": "invoke"}, {**good, "rights": [1]},
                        {**good, "expires_at": "soon"}, {**good, "expires_at": 1e400},
                        {**good, "operator": "yes"}, {**good, "key_id": 2 ** 80},
                        {**good, "revocation_id": GOOD_ID[:-1]}, {k: v for k, v in good.items() if k != "rights"}]]
    minted.append({"tenant": "alice\x00", "type": "token.minted", "subject": "ef" * 8,
                   "payload": json.dumps({**good, "revocation_id": "ef" * 64, "operator": True})})
    minted.append({"tenant": "alice", "type": "token.minted", "subject": "y", "time": 1e12,  # year ~33658
                   "payload": json.dumps({**good, "revocation_id": OTHER_ID})})
    data_dir = forged_log(tmp_path, minted, roll)
    tokens = token_service(data_dir)
    listed = tokens.list(None, include_operator=True)
    assert [(t["revocation_id"], t["revoked"], t["tenant"]) for t in listed] == \
        [(GOOD_ID, True, "alice"), (OTHER_ID, False, "alice")]
    assert listed[0]["rights"] == ["invoke"] and listed[1]["created_at"] == 1e12
    assert tokens._minted(GOOD_ID) == ("alice", False)
    assert tokens._minted("ef" * 64) == (None, False)  # its only row has a tenant with a null byte
    assert len(warnings(caplog)) == 2  # one per read that skipped rows: the listing, the second lookup


def test_the_spec_store_prunes_a_service_and_sweeps_the_old_flat_layout(tmp_path):
    """Each service's folder keeps only what is asked for; the first sweep moves the specs an older release
    kept in `specs/<fingerprint>.json` into the folders of the services that still need them."""
    import dataclasses

    from solo.core.spec import ServiceSpec
    from solo.registry.specs import SpecStore

    store = SpecStore(tmp_path / "specs")
    one, two = (ServiceSpec(name="kv", source=f"x = {n}\n") for n in (1, 2))
    first, second = store.put("acme", one), store.put("acme", two)
    other = store.put("beta", one)  # the same spec in another tenant: a file of its own
    assert first == other and store.prune("acme", "kv", {second}) == [first]
    assert store.get(first, "acme", "kv") is None and store.get(first, "beta", "kv") is not None
    store.prune("acme", "kv", set())
    assert not (tmp_path / "specs" / "acme").exists()
    legacy = ServiceSpec(name="old", source="y = 1\n")
    gone = ServiceSpec(name="gone", source="y = 2\n")
    for spec in (legacy, gone):
        (tmp_path / "specs" / f"{spec.fingerprint()}.json").write_text(json.dumps(dataclasses.asdict(spec)))
    assert store.get(legacy.fingerprint(), "acme", "old").fingerprint() == legacy.fingerprint()  # where an older release put it
    store.sweep({("acme", "old"): {legacy.fingerprint()}, ("beta", "kv"): {other}})
    assert sorted(p.relative_to(tmp_path / "specs").as_posix() for p in (tmp_path / "specs").rglob("*.json")) == \
        sorted([f"acme/old/{legacy.fingerprint()}.json", f"beta/kv/{other}.json"])
    assert store.get(legacy.fingerprint(), "acme", "old").source == legacy.source
