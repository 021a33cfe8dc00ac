"""`solo secrets put|get|ls|rm|rotate`: the vault."""
from __future__ import annotations


def add_parsers(sub, local, common) -> None:
    """Add this module's commands to the `solo` parser (cli.build_parser)."""


__all__ = ["add_parsers"]
