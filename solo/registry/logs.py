"""Services' logs: where a service's output is kept and how the gateway reads it."""
from __future__ import annotations


class LogsMixin:
    """Mixed into RegistryActor (registry/actor.py)."""


__all__ = ["LogsMixin"]
