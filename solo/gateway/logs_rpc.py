"""The Logs RPC: a service's output, kept by its host, read and followed by its tenant."""
from __future__ import annotations


class LogsRpcs:
    """Mixed into GatewayServicer (gateway/servicer.py)."""


__all__ = ["LogsRpcs"]
