"""Configuration: discovery, environment overrides, strict validation, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

import assetry
from assetry.config import Config, load_config, parse_size
from assetry.errors import ConfigError, ValidationError
from assetry.redact import redact_secrets, redact_text, secret_values


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_work_without_a_file(tmp_path: Path) -> None:
    cfg = load_config()
    assert cfg.source is None
    assert cfg.storage.backend == "fsspec"
    assert cfg.catalog.backend == "lancedb"
    assert cfg.vectors.dimension == 1536
    # With no file the store goes to the user's data directory (redirected to tmp_path by conftest).
    assert cfg.root.startswith(str(tmp_path / "xdg-data"))


def test_file_is_found_in_a_parent_directory(tmp_path: Path) -> None:
    write(tmp_path / "assetry.toml", '[store]\nroot = "data"\n[vectors]\ndimension = 384\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    cfg = load_config(start=sub)
    assert cfg.source == tmp_path / "assetry.toml"
    assert cfg.vectors.dimension == 384
    # Relative paths are relative to the file, not to the working directory.
    assert cfg.root == str(tmp_path / "data")
    assert cfg.catalog_url == str(tmp_path / "data" / "catalog")


def test_file_without_root_keeps_the_store_beside_it(tmp_path: Path) -> None:
    write(tmp_path / "assetry.toml", "")
    assert load_config().root == str(tmp_path / ".assetry")


def test_explicit_path_and_env_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    write(other / "custom.toml", "[vectors]\ndimension = 3\n")
    assert load_config(other / "custom.toml").vectors.dimension == 3
    monkeypatch.setenv("ASSETRY_CONFIG", str(other / "custom.toml"))
    assert load_config().vectors.dimension == 3
    monkeypatch.setenv("ASSETRY_CONFIG", str(other / "missing.toml"))
    with pytest.raises(ConfigError, match="missing.toml"):
        load_config()


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml"):
        load_config(tmp_path / "nope.toml")


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "assetry.toml", "[vectors]\ndimension = 384\n[usage]\nenabled = true\n")
    monkeypatch.setenv("ASSETRY_VECTORS__DIMENSION", "768")
    monkeypatch.setenv("ASSETRY_USAGE__ENABLED", "false")
    monkeypatch.setenv("ASSETRY_STORAGE__URL", "memory://bucket/x")
    monkeypatch.setenv("ASSETRY_PLUGINS__BLOCK", "assetry-media, other")
    cfg = load_config()
    assert cfg.vectors.dimension == 768
    assert cfg.usage.enabled is False
    assert cfg.storage_url == "memory://bucket/x"
    assert cfg.plugins.block == ("assetry-media", "other")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[vectors]\ndimension = "big"\n', "vectors.dimension"),
        ("[vectors]\ndimension = 0\n", "vectors.dimension"),
        ('[vectors]\nmetric = "manhattan"\n', "vectors.metric"),
        ("[vectors]\ndimensions = 3\n", "vectors.dimensions"),
        ('[storage]\ndigest = "md5"\n', "storage.digest"),
        ('[usage]\nenabled = "yes"\n', "usage.enabled"),
        ('[gc]\nquota = "lots"\n', "gc.quota"),
        ('[store]\nroot = ""\n', "store.root"),
        ('[ingest]\ndigest_cache = "yes"\n', "ingest.digest_cache"),
        ('[ingest]\ndigest_cache_path = ""\n', "ingest.digest_cache_path"),
        ("[ingest]\ndigest_cache_path = 3\n", "ingest.digest_cache_path"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("vectors = 3\n", "vectors"),
    ],
)
def test_bad_keys_and_types_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    write(tmp_path / "assetry.toml", text)
    with pytest.raises(ConfigError) as info:
        assetry.open().close()
    assert info.value.field == key, str(info.value)
    assert "assetry.toml" in str(info.value)


def test_bad_env_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSETRY_VECTORS__DIMENSION", "wide")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert info.value.field == "vectors.dimension"


def test_errors_blame_what_set_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "assetry.toml", "[vectors]\ndimension = 4\n[gc]\nquota = 'lots'\n")
    cases = [  # (environment, arguments) -> what the message starts with
        ({}, None, "assetry.toml: gc.quota:"),
        ({"ASSETRY_GC__QUOTA": "-1"}, None, "ASSETRY_GC__QUOTA: gc.quota:"),
        ({"ASSETRY_VECTORS__SIZE": "4", "ASSETRY_GC__QUOTA": "1"}, None, "ASSETRY_VECTORS__SIZE: vectors."),
        ({"ASSETRY_GC__QUOTA": "-1"}, {"gc": {"quota": -2}}, "arguments: gc.quota:"),
    ]
    for environment, overrides, start in cases:
        with monkeypatch.context() as m:
            for name, value in environment.items():
                m.setenv(name, value)
            with pytest.raises(ConfigError) as info:
                load_config(overrides=overrides)
        assert str(info.value).startswith(start), (environment, str(info.value))
    monkeypatch.setenv("ASSETRY_NOSUCH__X", "1")
    with pytest.raises(ConfigError, match="^ASSETRY_NOSUCH__X: nosuch: unknown section"):
        assetry.open(gc={"quota": 1})
    assert not (tmp_path / ".assetry").exists()


def test_corrupt_file_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    write(tmp_path / "assetry.toml", "[store\nroot = 'x'\n")
    with pytest.raises(ConfigError, match=r"assetry.toml: not valid TOML"):
        assetry.open()
    assert not (tmp_path / ".assetry").exists()
    assert not (tmp_path / "x").exists()
    (tmp_path / "assetry.toml").write_bytes(b"[store]\nroot = '\xff\xfe'\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"^assetry.toml: not UTF-8 text \(byte 16\)$"):
        assetry.open()
    assert not (tmp_path / ".assetry").exists()


@pytest.mark.parametrize("tenant", ["", "  ", "two\nlines"])
def test_an_empty_or_broken_tenant_is_refused_before_anything_is_created(tmp_path: Path, tenant: str) -> None:
    write(tmp_path / "assetry.toml", f"[store]\ntenant = {tenant!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError) as info:
        assetry.open()
    assert info.value.field == "store.tenant"
    (tmp_path / "assetry.toml").unlink()
    with pytest.raises(ValidationError) as other:
        assetry.open(tenant=tenant)  # given to open: never replaced by the configured tenant
    assert other.value.field == "tenant"
    assert not (tmp_path / ".assetry").exists()


@pytest.mark.parametrize("dimension", [0, -3, 65_537, 2**31, 10**20])
def test_a_dimension_out_of_range_is_refused_before_anything_is_made(tmp_path: Path, dimension: int) -> None:
    """A typo of a dimension used to fail half-way through creating the catalog, which then recorded it
    and refused every later open with the right one."""
    with pytest.raises(ConfigError) as info:
        assetry.open(root=tmp_path / "s", vectors={"dimension": dimension})
    assert info.value.field == "vectors.dimension"
    assert not (tmp_path / "s").exists()
    assetry.open(root=tmp_path / "s", vectors={"dimension": 65_536}).close()


def test_backend_options_are_validated_by_the_backend(tmp_path: Path) -> None:
    write(tmp_path / "assetry.toml", "[catalog.options]\nno_such_option = 1\n")
    with pytest.raises(ConfigError) as info:
        assetry.open()
    assert info.value.field == "catalog.options.no_such_option"
    assert str(info.value) == "assetry.toml: catalog.options.no_such_option: unknown key"  # what set it
    (tmp_path / "assetry.toml").unlink()
    with pytest.raises(ConfigError) as given:
        assetry.open(root=tmp_path / "s", catalog={"options": {"no_such_option": 1}})
    assert str(given.value) == "arguments: catalog.options.no_such_option: unknown key"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2GB", 2_000_000_000),
        ("500 MiB", 500 * 1024**2),
        ("1.5k", 1500),
        ("123", 123),
        ("10kib", 10240),
        ("3Ki", 3072),
        ("7b", 7),
        ("9007199254740993", 9007199254740993),  # exact, not through a float
        ("9223372036854775807", 2**63 - 1),
        ("0.5GiB", 2**29),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    [
        *("-1", "lots", "2 GBs", "", True, "5ib", "7i", "2bb", "1kk", 1.5, 1e9, b"100", None),
        *("9223372036854775808", 2**63, "9" * 400, "99999999999999999999999", "9000000PB", -1),
    ],
)
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(ConfigError, match="quota"):
        parse_size(text)  # type: ignore[arg-type]


def test_secrets_are_redacted() -> None:
    data = {
        "storage": {
            "url": "s3://AKIAKEY:supersecret@bucket/x",
            "options": {"key": "AKIA123", "secret": "shh", "endpoint_url": "http://127.0.0.1:9000"},
        },
        "catalog": {"options": {"storage_options": {"aws_secret_access_key": "shh", "aws_region": "eu"}}},
    }
    text = repr(redact_secrets(data))
    assert "supersecret" not in text
    assert "AKIA" not in text
    assert "shh" not in text
    assert "127.0.0.1:9000" in text
    assert "eu" in text


def test_to_dict_shows_effective_locations(tmp_path: Path) -> None:
    cfg = Config()
    data = cfg.to_dict()
    assert data["storage"]["url"] == cfg.storage_url
    assert data["catalog"]["url"] == cfg.catalog_url


def test_secret_values_and_redact_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-value")
    options = {
        "key": "AKIAEXAMPLE",
        "client_kwargs": {"aws_secret_access_key": "nested-secret"},
        "anon": False,
        "endpoint_url": "http://127.0.0.1:9000",
        "token": "ab",
    }
    found = secret_values(options, "s3://user:pass-word@bucket/x")
    assert set(found) == {
        "AKIAEXAMPLE",
        "nested-secret",
        "env-secret-value",
        "user:pass-word",
        "pass-word",
        "user",
    }
    assert found == sorted(found, key=len, reverse=True)  # longest first: no partial leftovers
    message = "denied for AKIAEXAMPLE/nested-secret at s3://user:pass-word@bucket (env-secret-value)"
    redacted = redact_text(message, found)
    for secret in found:
        assert secret not in redacted
    assert "127.0.0.1" not in found
