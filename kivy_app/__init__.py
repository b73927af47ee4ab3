"""The touch-first Kivy app over bisc's UI-agnostic core.

Its screens arrive with the app issue; this package is where they live.
"""
