"""Where bisc keeps its files.

By default the platform's own directories (platformdirs); `--data-dir DIR`
puts everything under DIR, so several nodes can run on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "bisc"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    default_storage_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.toml"

    @property
    def identity_file(self) -> Path:
        return self.data_dir / "identity.key"

    @classmethod
    def default(cls) -> Paths:
        return cls(
            config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            default_storage_dir=Path(platformdirs.user_downloads_dir()),
        )

    @classmethod
    def under(cls, root: str | Path) -> Paths:
        root = Path(root).expanduser().resolve()
        return cls(config_dir=root, data_dir=root, default_storage_dir=root / "downloads")

    @classmethod
    def resolve(cls, data_dir: str | Path | None) -> Paths:
        return cls.default() if data_dir is None else cls.under(data_dir)
