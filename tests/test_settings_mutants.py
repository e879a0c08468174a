"""Settings validation at its edges (polyalphascan/settings.py): only trailing slashes leave a
URL, a URL whose password cannot even be read is hidden whole, a password written twice is
masked twice, and no host is never loopback.
"""

from __future__ import annotations

import pytest

from polyalphascan.settings import SettingsError, _is_loopback, load_settings


@pytest.mark.parametrize("var,value,stored", [
    ("GAMMA_API_URL", "http://127.0.0.1:8081/apiX", "http://127.0.0.1:8081/apiX"),
    ("GAMMA_API_URL", "http://127.0.0.1:8081/X//", "http://127.0.0.1:8081/X"),
    ("CLOB_WS_URL", "ws://127.0.0.1:9000/wsXX", "ws://127.0.0.1:9000/wsXX"),
])
def test_only_trailing_slashes_are_dropped_from_a_url(monkeypatch: pytest.MonkeyPatch, var: str, value: str,
                                                      stored: str) -> None:
    monkeypatch.setenv(var, value)
    assert getattr(load_settings(), var.lower()) == stored


def test_a_url_whose_password_cannot_be_read_is_hidden_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://user:s3cr3t@[::1")  # an unclosed IPv6 host: urlparse refuses it
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value) == "REDIS_URL='<unreadable value hidden>' is invalid: Invalid IPv6 URL"


def test_a_password_written_twice_is_masked_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redsi://user:s3cr3t@cache.example/x:s3cr3t@")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "s3cr3t" not in str(err.value)
    assert str(err.value).startswith("REDIS_URL='redsi://user:***@cache.example/x:***@' is invalid")


@pytest.mark.parametrize("host,loopback", [
    (None, False), ("", False), ("localhost", True), ("127.0.0.1", True), ("::1", True), ("10.0.0.1", False),
    ("example.com", False),
])
def test_which_hosts_are_loopback(host: str | None, loopback: bool) -> None:
    assert _is_loopback(host) is loopback
