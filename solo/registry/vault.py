"""The vault in the registry: secrets put, read, listed, removed, injected at start, each access an event."""
from __future__ import annotations


class VaultMixin:
    """Mixed into RegistryActor (registry/actor.py)."""


__all__ = ["VaultMixin"]
