"""One module + one .kv file per screen; kivy_app.app loads each the first time it is shown."""
