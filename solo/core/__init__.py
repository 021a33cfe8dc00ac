"""Pure Python pieces of Solo (no Ray imports): specs, payloads, routes, dispatch."""
