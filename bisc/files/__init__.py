"""File sharing I/O: hashing, chunk store, catalog, swarm downloads."""
