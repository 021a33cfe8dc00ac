"""The gRPC gateway: thin servicers over the dispatcher and the registry handle."""
