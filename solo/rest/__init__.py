"""The REST/JSON gateway: the gRPC gateway's handlers behind HTTP routes (FastAPI on the gateway's loop)."""
