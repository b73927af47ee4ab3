"""Compiled hot paths (Cython modules here, the Rust extension at
`bisc._bisc_rs`) and the selector that picks one implementation per hot path.

Use `bisc.hotpaths` rather than importing from here.
"""
