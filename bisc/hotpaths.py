"""The implementation serving each hot path, chosen once at import.

    from bisc import hotpaths
    data = hotpaths.packet.encode_packet(...)
    frame = hotpaths.fragment.Reassembler().push(data, now)

`SELECTION` says what loaded and why anything did not (see `bisc doctor`).
"""

from __future__ import annotations

from types import ModuleType

from bisc._native.select import HOT_PATHS, Selection, select

SELECTION: Selection = select()

packet: ModuleType = SELECTION.module("packet")
fragment: ModuleType = SELECTION.module("fragment")
chunkhash: ModuleType = SELECTION.module("chunkhash")
jitter: ModuleType = SELECTION.module("jitter")
bwe: ModuleType = SELECTION.module("bwe")


def report() -> dict[str, dict[str, object]]:
    """Per hot path: the chosen implementation, all loaded ones, and failures."""
    out: dict[str, dict[str, object]] = {}
    for hot_path, impls in HOT_PATHS.items():
        out[hot_path] = {
            "selected": SELECTION.chosen[hot_path],
            "loaded": sorted(SELECTION.loaded(hot_path)),
            "unavailable": {
                impl: SELECTION.errors.get(name, "not loaded (BISC_IMPL=python)")
                for impl, name in impls.items()
                if impl not in SELECTION.modules[hot_path]
            },
        }
    return out
