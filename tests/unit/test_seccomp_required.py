"""A cell asked to run under the seccomp filter never starts without it: where the filter cannot be built,
building it is a clear error, not a silent None (pyseccomp made unimportable in a child interpreter)."""
from __future__ import annotations

import os
import subprocess
import sys

from solo.runtime import cell_seccomp

WITHOUT_PYSECCOMP = """
import sys
sys.modules["pyseccomp"] = None  # what a machine without pyseccomp (or libseccomp) looks like to the import
from solo.runtime import cell_seccomp
try:
    cell_seccomp.bpf_fd()
except cell_seccomp.SeccompUnavailable as exc:
    print("refused:", exc)
else:
    print("built a filter")
print("available:", cell_seccomp.available())
"""


def test_without_libseccomp_the_filter_is_refused_with_how_to_fix():
    done = subprocess.run([sys.executable, "-c", WITHOUT_PYSECCOMP], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused: the cells' seccomp filter cannot be built here (ModuleNotFoundError")
    assert "[runtime] seccomp = false" in lines[0]
    assert lines[1] == "available: False"


def test_where_libseccomp_works_the_filter_is_built():
    assert cell_seccomp.unavailable_reason() == ""
    fd = cell_seccomp.bpf_fd()
    try:
        assert len(os.read(fd, 1 << 16)) > 0
    finally:
        os.close(fd)


REFUSAL_WITHOUT_PYSECCOMP = """
import sys
sys.modules["pyseccomp"] = None
from solo.config import load_config
from solo.runtime import sandbox
runtime = load_config(None).runtime
policy = sandbox.policy_from(runtime)
print("policy seccomp:", policy.seccomp)
print("refusal:", sandbox.refusal(policy))
runtime.seccomp = False
print("without:", sandbox.refusal(sandbox.policy_from(runtime)) or "none")
"""


def test_solo_up_refuses_when_the_filter_it_was_asked_for_cannot_be_built():
    """The filter was quietly left out (the policy said seccomp=False) where it could not be built."""
    done = subprocess.run([sys.executable, "-c", REFUSAL_WITHOUT_PYSECCOMP], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "policy seccomp: True"
    assert lines[1].startswith("refusal: services cannot be sandboxed as configured: the cells' seccomp filter")
    assert "[runtime] seccomp = false" in lines[1]
    assert lines[2] == "without: none"
