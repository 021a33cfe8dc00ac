"""Configuration reload in the registry: quotas, egress rules and the event log's retention."""
from __future__ import annotations


class ReloadMixin:
    """Mixed into RegistryActor (registry/actor.py)."""


__all__ = ["ReloadMixin"]
