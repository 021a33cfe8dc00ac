"""notebooks/event_history.ipynb runs top to bottom against a log this test generates."""
from __future__ import annotations

import os
import random

import nbformat
import pytest
from nbclient import NotebookClient

from solo.events.crypto import open_key
from solo.events.log import EventLog
from tests.conftest import ROOT


def make_history(data_dir, encrypt: bool = False):
    key = open_key(data_dir / "events", encrypt)  # as solo up does: the key, and events/encryption.json naming it
    log = EventLog(data_dir / "events", roll_rows=200, key=key, encrypt=encrypt)
    rng = random.Random(7)
    for tenant in ("acme", "globex", "initech"):
        for service in ("kv", "counter", "echo"):
            log.append([{"tenant": tenant, "type": "service.deploying", "subject": service, "payload": {"version": "1"}},
                        {"tenant": tenant, "type": "service.started", "subject": service, "payload": {"pid": 1}}])
            for _ in range(rng.randrange(0, 4)):
                log.append([{"tenant": tenant, "type": "service.crashed", "subject": service,
                             "payload": {"reason": "the service process exited"}},
                            {"tenant": tenant, "type": "service.restarted", "subject": service, "payload": {}}])
    log.roll()
    log.append([{"tenant": "acme", "type": "service.stopped", "subject": "kv", "payload": {}}])  # still in the WAL
    return log.last_id


@pytest.mark.parametrize("encrypt", [False, True], ids=["plaintext", "encrypted"])
def test_notebook_runs_against_a_generated_log(tmp_path, monkeypatch, encrypt):
    last_id = make_history(tmp_path, encrypt)
    if encrypt:  # the notebook's kernel is another process: it finds the key through events/encryption.json
        assert all(p.read_bytes()[-4:] == b"PARE" for p in (tmp_path / "events").glob("segment-*.parquet"))
    monkeypatch.setenv("SOLO_DATA_DIR", str(tmp_path))
    notebook = nbformat.read(ROOT / "notebooks" / "event_history.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   ).execute(env=dict(os.environ))
    outputs = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                        for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    assert f"{last_id} events, ids 1..{last_id}, 3 tenants" in outputs
    assert "service.crashed" in outputs and "the service process exited" in outputs
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the plots render"
    assert not [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
