"""The versioned route table the gateway keeps locally: where each tenant's services answer.

The registry publishes a new version whenever a route changes; gateways follow it in the
background and never ask the registry on the call path.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    tenant: str
    name: str
    version: str
    state: str  # STARTING, RUNNING, RESTARTING, STOPPED, FAILED
    address: str = ""
    key: str = ""
    message: str = ""
    concurrency: int = 1  # calls the service runs at a time (the gateway queues at most a limit beyond)
    grants: tuple[str, ...] = ()  # other tenants its owner exported it to (they call it as "<owner>/<name>")
    methods: tuple[str, ...] = ()  # its public methods (the gateway labels call durations with these only)
    restarts: int = 0  # restarts after a crash of this deployment (solo_service_restarts_total)


class RouteTable:
    def __init__(self) -> None:
        self.version = 0
        self._routes: dict[tuple[str, str], Route] = {}

    def replace(self, version: int, routes: list[Route]) -> None:
        if version <= self.version:
            return
        self._routes = {(r.tenant, r.name): r for r in routes}
        self.version = version

    def get(self, tenant: str, name: str) -> Route | None:
        return self._routes.get((tenant, name))

    def addresses(self) -> set[str]:
        return {r.address for r in self._routes.values() if r.address}

    def __len__(self) -> int:
        return len(self._routes)
