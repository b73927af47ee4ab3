"""Network I/O: the Transport interface, its aioquic and simulated
implementations, and the gossip/channel runtime that drives bisc.proto."""
