"""The registry: desired and observed state of every tenant's services (state.py is pure;
actor.py is the Ray shell; handle.py is how gateways talk to it)."""
