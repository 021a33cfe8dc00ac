"""What the tests in tests/cluster share. Each test runs a script in its own process (one Ray driver per
process: a ray.cluster_utils.Cluster, or an embedded Ray with its own settings); the script prints
`RESULT <json>` and the test asserts on it. Imported by the tests (`tests.cluster.scripted`) and by the
scripts (`scripted`, their own folder); it imports no Ray, so a script can set Ray's environment first."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "RESULT "


def run_script(script: str, *args: str, timeout: float) -> dict:
    """Run tests/cluster/`script` with `args` and return the JSON it reported; fail with its output if it did not."""
    run = subprocess.run([sys.executable, str(Path(__file__).with_name(script)), *map(str, args)],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    lines = [line for line in run.stdout.splitlines() if line.startswith(PREFIX)]
    assert run.returncode == 0 and lines, f"{script} failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return json.loads(lines[-1][len(PREFIX):])


def report(result: dict) -> None:
    print(PREFIX + json.dumps(result), flush=True)


def teardown(solo, cluster=None) -> None:
    """Stop Solo (if it started), then the script's Ray and its Cluster."""
    if solo is not None:
        solo.stop()
    import ray
    ray.shutdown()
    if cluster is not None:
        cluster.shutdown()
