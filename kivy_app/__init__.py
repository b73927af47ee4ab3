"""The Kivy front end of bisc: screens (.kv + .py, loaded lazily) over the UI-agnostic core (bisc.app).

Nothing here does networking or media: it calls the public API of bisc.app and turns its
events into Kivy properties (bridge.py)."""
