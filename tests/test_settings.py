from __future__ import annotations

import pytest
from pydantic import Field

from polyalphascan.settings import EMBEDDED_REDIS, Settings, SettingsError, _describe, load_settings

DEFAULTS = {
    "llm_max_concurrent": 5,
    "llm_batch_size": 10,
    "ws_max_connections": 10,
    "ws_tokens_per_connection": 500,
    "poll_interval_seconds": 30.0,
    "enable_incremental_update": True,
    "enable_redis_cache": False,
    "redis_url": EMBEDDED_REDIS,
    "cache_ttl_seconds": 3600,
    "price_queue_max_size": 10_000,
    "openrouter_api_key": None,
    "llm_base_url": "https://openrouter.ai/api/v1",
    "polymarket_tag": [],
    "gamma_api_url": "https://gamma-api.polymarket.com",
    "clob_ws_url": "wss://ws-subscriptions-clob.polymarket.com/ws/market",
}


@pytest.mark.parametrize("name,expected", sorted(DEFAULTS.items()))
def test_default(name: str, expected: object) -> None:
    assert getattr(load_settings(), name) == expected


def test_every_field_is_in_env_example() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    missing = [f.upper() for f in Settings.model_fields if f"{f.upper()}=" not in text]
    assert missing == []


@pytest.mark.parametrize(
    "var,value,message",
    [
        ("WS_TOKENS_PER_CONNECTION", "600", "WS_TOKENS_PER_CONNECTION='600' is invalid: must be >= 1 and <= 500"),
        ("WS_TOKENS_PER_CONNECTION", "0", "WS_TOKENS_PER_CONNECTION='0' is invalid: must be >= 1 and <= 500"),
        ("LLM_MAX_CONCURRENT", "-1", "LLM_MAX_CONCURRENT='-1' is invalid: must be >= 1 and <= 100"),
        ("LLM_BATCH_SIZE", "ten", "LLM_BATCH_SIZE='ten' is invalid: must be a whole number"),
        ("WS_MAX_CONNECTIONS", "1.5", "WS_MAX_CONNECTIONS='1.5' is invalid: must be a whole number"),
        ("CACHE_TTL_SECONDS", "0", "CACHE_TTL_SECONDS='0' is invalid: must be >= 1 and <= 2592000"),
        ("PRICE_QUEUE_MAX_SIZE", "-5", "PRICE_QUEUE_MAX_SIZE='-5' is invalid: must be >= 1 and <= 10000000"),
        ("POLL_INTERVAL_SECONDS", "abc", "POLL_INTERVAL_SECONDS='abc' is invalid: must be a number"),
        ("POLL_INTERVAL_SECONDS", "-3", "POLL_INTERVAL_SECONDS='-3' is invalid: must be > 0 and <= 86400"),
        ("ENABLE_INCREMENTAL_UPDATE", "maybe", "ENABLE_INCREMENTAL_UPDATE='maybe' is invalid: must be true or false"),
        ("ENABLE_REDIS_CACHE", "2", "ENABLE_REDIS_CACHE='2' is invalid: must be true or false"),
        ("GAMMA_API_URL", "gamma.local", "GAMMA_API_URL='gamma.local' is invalid: must be a URL starting with http:// or https:// and naming a host"),
        ("LLM_BASE_URL", "ftp://x", "LLM_BASE_URL='ftp://x' is invalid: must be a URL starting with http:// or https:// and naming a host"),
        ("CLOB_WS_URL", "http://x/ws", "CLOB_WS_URL='http://x/ws' is invalid: must be a URL starting with ws:// or wss:// and naming a host"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL='localhost:6379' is invalid: must be 'embedded', redis://host:port/db, rediss://... or unix:///path"),
        ("REDIS_KEY_PREFIX", "a b", "REDIS_KEY_PREFIX='a b' is invalid: may hold only letters, digits, '_', '-' and '.'"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL='LOUD' is invalid: must be one of 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ],
)
def test_bad_value_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert str(exc.value) == message


def test_real_gamma_is_never_polled_faster_than_30s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "5")
    with pytest.raises(SettingsError, match="POLL_INTERVAL_SECONDS=5 is invalid: the real Gamma API"):
        load_settings()
    monkeypatch.setenv("GAMMA_API_URL", "http://127.0.0.1:8081")
    assert load_settings().poll_interval_seconds == 5.0


def test_several_bad_values_give_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_TOKENS_PER_CONNECTION", "600")
    monkeypatch.setenv("LLM_MAX_CONCURRENT", "0")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert sorted(str(exc.value).splitlines()) == [
        "LLM_MAX_CONCURRENT='0' is invalid: must be >= 1 and <= 100",
        "WS_TOKENS_PER_CONNECTION='600' is invalid: must be >= 1 and <= 500",
    ]


def test_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYMARKET_TAG", "politics, crypto,,")
    monkeypatch.setenv("REDIS_URL", "rediss://:s3cret@redis.example:6380/2")
    monkeypatch.setenv("OPENROUTER_API_KEY", "placeholder-key")
    monkeypatch.setenv("ENABLE_REDIS_CACHE", "true")
    s = load_settings()
    assert s.polymarket_tag == ["politics", "crypto"]
    assert s.redis_url == "rediss://:s3cret@redis.example:6380/2" and not s.embedded_redis
    assert s.llm_enabled and s.openrouter_api_key is not None
    assert s.openrouter_api_key.get_secret_value() == "placeholder-key"
    assert "placeholder-key" not in repr(s)  # secrets never printed
    assert s.enable_redis_cache is True


def test_empty_key_means_no_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "")
    assert load_settings().llm_enabled is False


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("LLM_BATCH_SIZE=7\nWS_MAX_CONNECTIONS=3\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert (s.llm_batch_size, s.ws_max_connections) == (7, 3)


def test_cli_reports_bad_config_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from polyalphascan_app.cli import app

    monkeypatch.setenv("WS_TOKENS_PER_CONNECTION", "600")
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 2
    assert "WS_TOKENS_PER_CONNECTION='600' is invalid: must be >= 1 and <= 500" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("var,value,schemes", [
    # a scheme and no host: each is refused with the variable's own line
    ("GAMMA_API_URL", "https://", "http:// or https://"),
    ("GAMMA_API_URL", "http://:8080", "http:// or https://"),
    ("LLM_BASE_URL", "https:///v1", "http:// or https://"),
    ("LLM_BASE_URL", "http://user:pw@", "http:// or https://"),
    ("CLOB_WS_URL", "wss://", "ws:// or wss://"),
    ("CLOB_WS_URL", "ws://:9000/ws", "ws:// or wss://"),
    ("REDIS_URL", "redis://", None),
    ("REDIS_URL", "redis://:6379/0", None),
    ("REDIS_URL", "rediss://:secret@", None),
    ("REDIS_URL", "unix://", None),
    ("REDIS_URL", "http://127.0.0.1:6379", None),
])
def test_a_url_needs_a_scheme_and_a_host(monkeypatch: pytest.MonkeyPatch, var: str, value: str,
                                         schemes: str | None) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as exc:
        load_settings()
    want = (f"must be a URL starting with {schemes} and naming a host" if schemes else
            "must be 'embedded', redis://host:port/db, rediss://... or unix:///path")
    shown = value.replace(":pw@", ":***@").replace(":secret@", ":***@")  # passwords never printed
    assert str(exc.value) == f"{var}={shown!r} is invalid: {want}"


@pytest.mark.parametrize("var,value,stored", [
    ("GAMMA_API_URL", "http://127.0.0.1:8081/", "http://127.0.0.1:8081"),  # trailing slash dropped
    ("GAMMA_API_URL", "https://gamma.example", "https://gamma.example"),
    ("LLM_BASE_URL", "http://[::1]:9000/v1/", "http://[::1]:9000/v1"),
    ("CLOB_WS_URL", "ws://localhost:9000/ws/market", "ws://localhost:9000/ws/market"),
    ("REDIS_URL", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("REDIS_URL", "unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
    ("REDIS_URL", " Embedded ", EMBEDDED_REDIS),
    ("REDIS_URL", "", EMBEDDED_REDIS),
])
def test_good_urls_are_kept(monkeypatch: pytest.MonkeyPatch, var: str, value: str, stored: str) -> None:
    monkeypatch.setenv(var, value)
    assert getattr(load_settings(), var.lower()) == stored


def test_polling_pace_is_bound_to_the_real_gamma_host_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "30")  # exactly the floor: allowed
    assert load_settings().poll_interval_seconds == 30.0
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "29.9")
    with pytest.raises(SettingsError, match=r"^POLL_INTERVAL_SECONDS=29.9 is invalid: the real Gamma API"):
        load_settings()
    monkeypatch.setenv("GAMMA_API_URL", "https://gamma-api.polymarket.com.example")  # not the real host
    assert load_settings().poll_interval_seconds == 29.9


@pytest.mark.parametrize("var,value,message", [
    ("MIN_COVERAGE", "1.5", "MIN_COVERAGE='1.5' is invalid: must be >= 0 and <= 1"),
    ("MAX_COST", "0", "MAX_COST='0' is invalid: must be > 0 and <= 100"),
    ("LLM_COVER_PROBABILITY", "0", "LLM_COVER_PROBABILITY='0' is invalid: must be > 0 and <= 1"),
    ("LOG_FORMAT", "xml", "LOG_FORMAT='xml' is invalid: must be one of 'console' or 'json'"),
    ("MONITOR_PORT", "70000", "MONITOR_PORT='70000' is invalid: must be >= 0 and <= 65535"),
])
def test_more_ranges_are_named(monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert str(exc.value) == message


def test_derived_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_MAX_CONNECTIONS", "3")
    monkeypatch.setenv("WS_TOKENS_PER_CONNECTION", "7")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    s = load_settings()
    assert s.max_tokens_subscribed == 21 and s.log_level == "DEBUG" and s.embedded_redis and not s.llm_enabled


@pytest.mark.parametrize("override,message", [
    ({"llm_batch_size": 2.5}, "LLM_BATCH_SIZE=2.5 is invalid: must be a whole number"),  # int_from_float
    ({"llm_batch_size": [1]}, "LLM_BATCH_SIZE=[1] is invalid: must be a whole number"),  # int_type
    ({"max_cost": [1]}, "MAX_COST=[1] is invalid: must be a number"),  # float_type
    ({"enable_redis_cache": [1]}, "ENABLE_REDIS_CACHE=[1] is invalid: must be true or false"),  # bool_type
])
def test_typed_overrides_are_described_too(override: dict, message: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load_settings(**override)
    assert str(exc.value) == message


def test_a_malformed_redis_url_is_reported_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redsi://user:s3cr3t-pw@cache.example:6379/0")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "s3cr3t-pw" not in str(err.value)
    assert "REDIS_URL='redsi://user:***@cache.example:6379/0' is invalid" in str(err.value)


@pytest.mark.parametrize("url,ok", [
    ("http://llm.example.com/v1", False), ("https://llm.example.com/v1", True), ("http://127.0.0.1:8080/v1", True),
    ("http://localhost:9/v1", True), ("http://[::1]:9/v1", True), ("http://127.9.9.9/v1", True),
    ("http://10.0.0.5/v1", False),
])
def test_a_key_never_travels_over_plain_http_to_a_remote_host(monkeypatch: pytest.MonkeyPatch, url: str,
                                                               ok: bool) -> None:
    monkeypatch.setenv("LLM_BASE_URL", url)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-test-not-a-real-key")
    if ok:
        assert load_settings().llm_base_url == url.rstrip("/")
    else:
        with pytest.raises(SettingsError) as err:
            load_settings()
        assert "must use https://" in str(err.value) and "sk-test" not in str(err.value)
    monkeypatch.delenv("OPENROUTER_API_KEY")
    assert load_settings().llm_base_url == url.rstrip("/")  # no key, nothing to leak


@pytest.mark.parametrize("kind", ["greater_than_equal", "less_than_equal", "greater_than", "less_than"])
def test_every_comparison_error_names_the_whole_range(kind: str) -> None:
    err = {"loc": ("llm_timeout_seconds",), "input": 0, "type": kind, "msg": "pydantic's text", "ctx": {}}
    assert _describe(err) == "LLM_TIMEOUT_SECONDS=0 is invalid: must be > 0 and <= 600"


@pytest.mark.parametrize("bounds,rng", [
    ({"lt": 5}, "< 5"),
    ({"le": 9}, "<= 9"),
    ({"ge": 1}, ">= 1"),
    ({"gt": 0, "lt": 1}, "> 0 and < 1"),
])
def test_one_sided_and_strict_upper_bounds_are_described(monkeypatch: pytest.MonkeyPatch, bounds: dict,
                                                         rng: str) -> None:
    """Today every ranged field has two bounds and none uses `lt`; a field added with one bound
    or with `lt=` must still get its range right (not "< None", not "<=" for "<")."""
    monkeypatch.setitem(Settings.model_fields, "probe_field", Field(1, **bounds))
    err = {"loc": ("probe_field",), "input": 7, "type": "less_than", "ctx": {}}
    assert _describe(err) == f"PROBE_FIELD=7 is invalid: must be {rng}"


def test_an_error_without_a_message_still_reads_invalid() -> None:
    assert _describe({"loc": ("llm_model",), "input": "", "type": "something_new"}) == "LLM_MODEL='' is invalid: invalid"
    assert _describe({"type": "model_level"}) == "invalid"
