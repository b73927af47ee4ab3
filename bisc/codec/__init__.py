"""Sans-IO pure-Python references of every hot path.

These are the readable definitions; `bisc._native` picks a compiled
implementation of each when one is available and agrees with them.
"""
