"""The vault's RPCs: PutSecret, GetSecret, ListSecrets, DeleteSecret, RotateMasterKey."""
from __future__ import annotations


class SecretsRpcs:
    """Mixed into GatewayServicer (gateway/servicer.py)."""


__all__ = ["SecretsRpcs"]
