"""Learning from a server's confirmed examples: the examples store and the per-server cache adapters."""
