"""Identity keys: created once with 0600, reloaded, and clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bisc.errors import IdentityError
from bisc.identity import EndpointId, Identity
from bisc.paths import Paths
from tests.helpers import run_bisc


def test_created_once_with_private_permissions(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "identity.key"
    first = Identity.load_or_create(path)
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Identity.load_or_create(path)
    assert again.endpoint_id == first.endpoint_id


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    Identity.load_or_create(path)
    os.chmod(path, 0o644)
    Identity.load_or_create(path)
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_key_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(b"not a key")
    with pytest.raises(IdentityError, match="not a valid PEM"):
        Identity.load_or_create(path)


def test_signatures_verify_against_endpoint_id() -> None:
    identity = Identity.generate()
    signature = identity.sign(b"challenge")
    assert identity.endpoint_id.verify(signature, b"challenge")
    assert not identity.endpoint_id.verify(signature, b"other")
    assert not Identity.generate().endpoint_id.verify(signature, b"challenge")


def test_endpoint_id_text_roundtrip() -> None:
    eid = Identity.generate().endpoint_id
    text = str(eid)
    assert len(text) == 52 and text == text.lower()
    assert EndpointId.parse(text) == eid
    assert EndpointId.parse(text.upper()) == eid
    for bad in ("", "abc", text[:-1], text + "a", "0" * 52):
        with pytest.raises(IdentityError):
            EndpointId.parse(bad)


def test_data_dir_overrides_all_paths(tmp_path: Path) -> None:
    paths = Paths.resolve(tmp_path)
    for p in (paths.settings_file, paths.identity_file, paths.default_storage_dir):
        assert tmp_path.resolve() in p.parents


def test_cli_identity_is_stable(tmp_path: Path) -> None:
    first = run_bisc("--data-dir", str(tmp_path), "identity")
    second = run_bisc("--data-dir", str(tmp_path), "identity")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    EndpointId.parse(first.stdout.strip())
    other = run_bisc("--data-dir", str(tmp_path / "other"), "identity")
    assert other.stdout != first.stdout
