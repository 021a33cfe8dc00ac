"""Whether a host's resources can be placed: refuse at once, place, or wait for the autoscaler.

Pure decisions over plain data (node totals, the autoscaler's node types); the launcher
(solo/runtime/launcher.py) asks Ray for that data and acts on the verdict.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from solo.core.spec import Resources


@dataclass(frozen=True)
class NodeType:
    """A kind of node the autoscaler can add (Ray's NodeGroupConfig)."""
    name: str
    resources: Mapping[str, float]
    max_count: int  # -1: no limit; 0: never added


@dataclass(frozen=True)
class Verdict:
    action: Literal["place", "wait", "refuse"]  # place: some node holds it; wait: for the autoscaler
    message: str = ""


def wanted(resources: Resources) -> dict[str, float]:
    """The request as Ray resource amounts, zeros left out."""
    asked = {"CPU": resources.num_cpus, "GPU": resources.num_gpus, "memory": float(resources.memory_bytes),
             **resources.custom}
    return {k: float(v) for k, v in asked.items() if v}


def holds(have: Mapping[str, float], want: Mapping[str, float]) -> bool:
    return all(float(have.get(k, 0.0)) >= v for k, v in want.items())


def largest(nodes: list[Mapping[str, float]], want: Mapping[str, float]) -> str:
    """What the largest node has of each asked-for resource, e.g. "CPU=2, tpu=0"."""
    return ", ".join(f"{k}={max((float(n.get(k, 0.0)) for n in nodes), default=0.0):g}" for k in want)


def decide(resources: Resources, nodes: list[Mapping[str, float]], node_types: list[NodeType] | None,
           wait_for_autoscaler: bool) -> Verdict:
    """`nodes`: the total resources of each live node. `node_types`: what the autoscaler can add, or
    None when Ray does not say (no autoscaler config reported). Refuses only what can never fit."""
    want = wanted(resources)
    if not want or any(holds(node, want) for node in nodes):
        return Verdict("place")
    nobody = (f"no node in the cluster can ever hold this service: asked for {resources.describe()}; "
              f"the largest node has {largest(nodes, want)} ({len(nodes)} node(s))")
    if not wait_for_autoscaler:
        return Verdict("refuse", f"{nobody}. Ask for less, or add a node that has it")
    if node_types is None:
        return Verdict("wait")  # the autoscaler may know a node type that holds it; the wait is bounded
    addable = [t for t in node_types if t.max_count != 0]
    if any(holds(t.resources, want) for t in addable):
        return Verdict("wait")
    kinds = "; ".join(f"{t.name or '?'}: {', '.join(f'{k}={float(t.resources.get(k, 0)):g}' for k in want)}"
                      for t in addable) or "none"
    return Verdict("refuse", f"{nobody}, and no node type the autoscaler can add has it either ({kinds}). "
                             f"Ask for less, or add such a node type to the cluster config")


def timeout_message(resources: Resources, timeout: float, nodes: list[Mapping[str, float]], available: str,
                    wait_for_autoscaler: bool) -> str:
    """Why a host was not placed within `timeout`: taken resources, or (waiting for the autoscaler)
    no node that has them yet."""
    want = wanted(resources)
    head = f"Ray could not place the service within {timeout:g}s: asked for {resources.describe()}"
    if wait_for_autoscaler and want and not any(holds(node, want) for node in nodes):
        return (f"{head}; no node in the cluster has it (the largest node has {largest(nodes, want)}, "
                f"{len(nodes)} node(s)) and the autoscaler did not add one in time. Check the autoscaler "
                f"(`ray status`), or raise [runtime] schedule_timeout_seconds")
    return f"{head}; available now: {available}. Stop other services or ask for less"


class AutoscalerAsks:
    """The resources Solo has asked the autoscaler for: one bundle per host waiting for a node.

    Ray keeps a single standing request per cluster (each request_resources call replaces the last),
    so every change gives the whole list to send; an empty list withdraws Solo's request."""

    def __init__(self) -> None:
        self._bundles: dict[int, dict[str, float]] = {}
        self._next = 0

    def add(self, bundle: Mapping[str, float]) -> tuple[int, list[dict[str, float]]]:
        self._next += 1
        self._bundles[self._next] = dict(bundle)
        return self._next, self.bundles()

    def remove(self, ask: int) -> list[dict[str, float]] | None:
        """The list to send now, or None when `ask` was not (or no longer) pending."""
        if self._bundles.pop(ask, None) is None:
            return None
        return self.bundles()

    def bundles(self) -> list[dict[str, float]]:
        return [dict(b) for b in self._bundles.values()]
