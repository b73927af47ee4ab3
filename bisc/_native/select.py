"""Chooses, once at import, which implementation serves each hot path.

BISC_IMPL=auto (default) takes the fastest loaded implementation of each hot
path, in the order measured by `bisc bench`; python, cython or rust force one
implementation wherever it exists (hot paths it does not implement use the
pure-Python reference). BISC_IMPL=python never imports native code.

BISC_REQUIRE_NATIVE=1 turns a native module that fails to load into an
ImportError, so CI cannot pass silently on the pure-Python path.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from types import ModuleType

IMPL_CHOICES = ("auto", "python", "cython", "rust")

# Module of each implementation of each hot path.
HOT_PATHS: dict[str, dict[str, str]] = {
    "packet": {
        "python": "bisc.codec.packet",
        "cython": "bisc._native._packet",
        "rust": "bisc._native.rust",
    },
    "fragment": {
        "python": "bisc.codec.fragment",
        "cython": "bisc._native._fragment",
    },
    "chunkhash": {
        "python": "bisc.codec.chunkhash",
        "rust": "bisc._native.rust",
    },
    "jitter": {
        "python": "bisc.codec.jitter",
        "cython": "bisc._native._jitter",
    },
    "bwe": {
        "python": "bisc.codec.bwe",
        "cython": "bisc._native._bwe",
    },
}

# Fastest first, as measured by `bisc bench` (see README, Benchmarks).
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "packet": ("cython", "rust", "python"),
    "fragment": ("cython", "python"),
    "chunkhash": ("rust", "python"),
    "jitter": ("cython", "python"),
    "bwe": ("cython", "python"),
}

# Names each implementation module must provide, per hot path.
REQUIRED_NAMES: dict[str, tuple[str, ...]] = {
    "packet": ("MediaPacket", "encode_packet", "decode_packet", "HEADER_SIZE", "VERSION"),
    "fragment": ("fragment_frame", "Reassembler", "Frame"),
    "chunkhash": ("hash_chunks", "hash_file_chunks", "CHUNK_SIZE"),
    "jitter": ("JitterBuffer", "Decision"),
    "bwe": ("BandwidthEstimator", "STAT_NAMES"),
}


@dataclass
class Selection:
    """What loaded, what failed and what was chosen."""

    setting: str
    modules: dict[str, dict[str, ModuleType]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # module name -> reason
    chosen: dict[str, str] = field(default_factory=dict)  # hot path -> impl name

    def module(self, hot_path: str) -> ModuleType:
        return self.modules[hot_path][self.chosen[hot_path]]

    def loaded(self, hot_path: str) -> dict[str, ModuleType]:
        return dict(self.modules[hot_path])


def _setting() -> str:
    value = os.environ.get("BISC_IMPL", "auto").strip().lower() or "auto"
    if value not in IMPL_CHOICES:
        raise ImportError(f"BISC_IMPL={value!r} is not one of {', '.join(IMPL_CHOICES)}")
    return value


def _try_import(name: str, errors: dict[str, str]) -> ModuleType | None:
    if name in errors:
        return None
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
        return None


def select() -> Selection:
    setting = _setting()
    selection = Selection(setting)
    for hot_path, impls in HOT_PATHS.items():
        loaded: dict[str, ModuleType] = {}
        for impl, module_name in impls.items():
            if impl != "python" and setting == "python":
                continue
            module = _try_import(module_name, selection.errors)
            if module is None:
                continue
            missing = [n for n in REQUIRED_NAMES[hot_path] if not hasattr(module, n)]
            if missing:
                selection.errors[module_name] = f"missing {', '.join(missing)}"
                continue
            loaded[impl] = module
        selection.modules[hot_path] = loaded
        if setting in ("auto", "python"):
            order = AUTO_ORDER[hot_path] if setting == "auto" else ("python",)
            selection.chosen[hot_path] = next(i for i in order if i in loaded)
        elif setting in impls:
            if setting not in loaded:
                raise ImportError(
                    f"BISC_IMPL={setting} but {impls[setting]} did not load: "
                    f"{selection.errors.get(impls[setting], 'unknown error')}"
                )
            selection.chosen[hot_path] = setting
        else:
            selection.chosen[hot_path] = "python"
    required = os.environ.get("BISC_REQUIRE_NATIVE", "") not in ("", "0")
    if setting != "python" and required and selection.errors:
        details = "; ".join(f"{m}: {e}" for m, e in sorted(selection.errors.items()))
        raise ImportError(f"BISC_REQUIRE_NATIVE is set but native code did not load: {details}")
    return selection
