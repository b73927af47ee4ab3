"""Media I/O: devices, capture, playback, encode/decode pipelines."""
