"""Sans-IO protocol state machines: gossip, channel membership, admission."""
