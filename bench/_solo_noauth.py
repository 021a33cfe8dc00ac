"""`solo up --foreground` with authorization switched off: the anchor for what capability-token
checks cost (bench/invoke.py, system `solo-noauth`). Bench-only: Solo itself has no such switch.

Every call is let through as the operator of tenant `default` without looking at its metadata.
"""
from __future__ import annotations

import sys

import solo.runtime.supervisor as supervisor
from solo.security.tokens import Principal

OPERATOR = Principal("default", operator=True, token_id="noauth")


class AllowAll:
    """The authenticator interface, minus the checks."""

    def __init__(self, real):
        self.real = real  # mint etc. still work (the harness deploys with the operator token)
        self.keys, self.verifier = real.keys, real.verifier

    def authenticate(self, metadata, request, context=None):
        return OPERATOR

    def __getattr__(self, name):
        return getattr(self.real, name)


real_factory = supervisor.authenticator
supervisor.authenticator = lambda config, keys: AllowAll(real_factory(config, keys))

if __name__ == "__main__":
    from solo.cli import main
    sys.exit(main(sys.argv[1:]))
