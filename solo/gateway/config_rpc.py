"""The configuration RPCs (operator only): GetConfig and ReloadConfig."""
from __future__ import annotations


class ConfigRpcs:
    """Mixed into GatewayServicer (gateway/servicer.py)."""


__all__ = ["ConfigRpcs"]
