"""Where services run: the host actor (Ray shell), the service instance it hosts, the launcher."""
