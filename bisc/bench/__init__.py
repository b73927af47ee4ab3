"""`bisc bench`: every loaded implementation of each hot path, measured in one run."""
