"""Configuration: `assetry.toml`, environment overrides, and defaults that work with no file at all.

Where the file comes from, first match wins: an explicit path (``--config``, ``assetry.open(config=...)``),
``$ASSETRY_CONFIG``, ``assetry.toml`` in the working directory or any parent. Without a file the store lives
in the user's data directory. Environment variables ``ASSETRY_<SECTION>__<KEY>`` override single keys
(``ASSETRY_STORAGE__URL=s3://bucket/assets``); their values are read as TOML literals when they parse as
one (``true``, ``384``, ``["a", "b"]``) and as plain strings otherwise.

Unknown keys and wrong types are `ConfigError`s naming the key. Tables claimed by plugins (through
``assetry_config_sections``) are validated once the plugins are loaded (`Config.claim_sections`).
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from assetry import _convert
from assetry.digests import ALGORITHMS, DEFAULT_ALGORITHM
from assetry.errors import ConfigError, ValidationError
from assetry.model import check_name
from assetry.redact import redact_secrets

CONFIG_FILENAME = "assetry.toml"
ENV_CONFIG = "ASSETRY_CONFIG"
ENV_PREFIX = "ASSETRY_"
METRICS = ("cosine", "l2", "dot")


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ConfigError(attribute.name, f"must be > 0, got {value!r}")


MAX_DIMENSION = 65_536
"""The longest embedding a catalog takes. Models stop around 12,288 dimensions; far larger values are
typos, and beyond 2**31 LanceDB fails half-way through creating the catalog."""


def _dimension(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 < value <= MAX_DIMENSION:
        raise ConfigError(attribute.name, f"must be between 1 and {MAX_DIMENSION:,}, got {value!r}")


def _non_empty(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value.strip():
        raise ConfigError(attribute.name, "must not be empty")


def _tenant_name(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        check_name(value, attribute.name)
    except ValidationError as exc:
        raise ConfigError(attribute.name, exc.reason) from None


@attrs.frozen(kw_only=True)
class StoreSection:
    root: str | None = attrs.field(default=None, validator=_non_empty)
    """Where the store lives (a directory or an fsspec URL). Storage and catalog default to places in it."""
    tenant: str = attrs.field(default="default", validator=_tenant_name)
    """The tenant new assets belong to and queries are scoped to, unless the API call says otherwise."""


@attrs.frozen(kw_only=True)
class StorageSection:
    backend: str = "fsspec"
    url: str | None = attrs.field(default=None, validator=_non_empty)
    """Blob storage location; defaults to the store root."""
    digest: str = attrs.field(default=DEFAULT_ALGORITHM)
    options: dict[str, Any] = attrs.field(factory=dict)
    """Passed to the backend (for fsspec: filesystem options such as ``endpoint_url``)."""

    @digest.validator
    def _known_digest(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in ALGORITHMS:
            raise ConfigError(attribute.name, f"unknown digest {value!r}; choose one of {sorted(ALGORITHMS)}")


@attrs.frozen(kw_only=True)
class CatalogSection:
    backend: str = "lancedb"
    url: str | None = attrs.field(default=None, validator=_non_empty)
    """Catalog location; defaults to ``<root>/catalog``."""
    options: dict[str, Any] = attrs.field(factory=dict)
    """Validated by the catalog backend (see the config reference)."""


@attrs.frozen(kw_only=True)
class VectorsSection:
    dimension: int = attrs.field(default=1536, validator=_dimension)
    """Length of the embeddings callers supply. Fixed when the catalog is created."""
    metric: str = attrs.field(default="cosine")

    @metric.validator
    def _known_metric(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in METRICS:
            raise ConfigError(attribute.name, f"unknown metric {value!r}; choose one of {list(METRICS)}")


@attrs.frozen(kw_only=True)
class UsageSection:
    enabled: bool = True
    """Record every content access (last_used, access counts). Needed for LRU eviction."""
    flush_events: int = attrs.field(default=1000, validator=_positive)
    """Fold buffered access events into the catalog once this many are waiting..."""
    flush_seconds: float = attrs.field(default=10.0, validator=_positive)
    """...or once the oldest has waited this long (checked on the next access), and always on close."""


@attrs.frozen(kw_only=True)
class GcSection:
    quota: str | int | None = attrs.field(default=None)
    """Default quota for ``assetry gc`` (bytes, or a size such as ``"2GB"`` / ``"500 MiB"``)."""

    @quota.validator
    def _parseable(self, attribute: attrs.Attribute[Any], value: str | int | None) -> None:
        if value is not None:
            parse_size(value, field=attribute.name)

    @property
    def quota_bytes(self) -> int | None:
        return None if self.quota is None else parse_size(self.quota)


@attrs.frozen(kw_only=True)
class IngestSection:
    digest_cache: bool = True
    """Remember what local files hashed to (by path, size, times and inode), so adding them again reads
    only their metadata. See `assetry.digest_cache` for when an entry is trusted."""
    digest_cache_path: str | None = attrs.field(default=None, validator=_non_empty)
    """The cache file; default ``digests.sqlite`` in the user's cache directory, shared by all stores."""


@attrs.frozen(kw_only=True)
class PluginsSection:
    block: tuple[str, ...] = ()
    """Entry-point names (``assetry-media``) or plugin names not to load. Also ``$ASSETRY_PLUGINS__BLOCK``
    (comma-separated)."""


@attrs.frozen(kw_only=True)
class Config:
    store: StoreSection = attrs.field(factory=StoreSection)
    storage: StorageSection = attrs.field(factory=StorageSection)
    catalog: CatalogSection = attrs.field(factory=CatalogSection)
    vectors: VectorsSection = attrs.field(factory=VectorsSection)
    usage: UsageSection = attrs.field(factory=UsageSection)
    gc: GcSection = attrs.field(factory=GcSection)
    ingest: IngestSection = attrs.field(factory=IngestSection)
    plugins: PluginsSection = attrs.field(factory=PluginsSection)
    sections: dict[str, Any] = attrs.field(factory=dict)
    """Plugin tables: raw dicts until `claim_sections` replaces them with the plugins' attrs instances."""
    source: Path | None = None
    """The file this was read from, if any."""
    origins: dict[str, str] = attrs.field(factory=dict)
    """Keys set outside the file (dotted), and by what: an environment variable's name, or "arguments"."""

    # -- derived locations ----------------------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        """Relative paths in the file are relative to the file's directory."""
        return self.source.parent if self.source else Path.cwd()

    @property
    def root(self) -> str:
        if self.store.root:
            return _resolve(self.store.root, self.base_dir)
        if self.source:
            return str(self.base_dir / ".assetry")
        return platformdirs.user_data_dir("assetry", appauthor=False)

    @property
    def storage_url(self) -> str:
        return _resolve(self.storage.url, self.base_dir) if self.storage.url else self.root

    @property
    def catalog_url(self) -> str:
        if self.catalog.url:
            return _resolve(self.catalog.url, self.base_dir)
        return _join(self.root, "catalog")

    @property
    def digest_cache_path(self) -> Path | None:
        """The digest cache file, or None when it is off."""
        if not self.ingest.digest_cache:
            return None
        if self.ingest.digest_cache_path:
            return self.base_dir / Path(self.ingest.digest_cache_path).expanduser()
        return Path(platformdirs.user_cache_dir("assetry", appauthor=False)) / "digests.sqlite"

    # -- plugin tables --------------------------------------------------------------------------------

    def claim_sections(self, claims: Mapping[str, type[Any]]) -> Config:
        """Validate plugin tables against the classes plugins registered; unclaimed tables are errors."""
        structured: dict[str, Any] = {}
        for name, raw in self.sections.items():
            if name not in claims:
                reason = "unknown section (no installed plugin claims it)"
                raise ConfigError(name, reason, source=_blame(name, self.origins, self._shown))
            structured[name] = _structure(raw, claims[name], name, self._shown, self.origins)
        for name, cls in claims.items():
            if name not in structured:
                structured[name] = _structure({}, cls, name, self._shown, self.origins)
        return attrs.evolve(self, sections=structured)

    @property
    def _shown(self) -> str | None:
        return self.source.name if self.source else None

    def blame(self, field: str | None) -> str | None:
        """What set a key, for an error naming it: an environment variable, the arguments, or the file."""
        return _blame(field, self.origins, self._shown)

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """The effective configuration as plain data, secrets redacted (for ``assetry config``)."""
        data: dict[str, Any] = {}
        for field in attrs.fields(Config):
            if field.name in _NOT_TABLES:
                continue
            data[field.name] = _convert.unstructure(getattr(self, field.name))
        data["store"]["root"] = self.root
        data["storage"]["url"] = self.storage_url
        data["catalog"]["url"] = self.catalog_url
        cache = self.digest_cache_path
        data["ingest"]["digest_cache_path"] = str(cache) if cache else None
        for name, section in self.sections.items():
            data[name] = section if isinstance(section, dict) else _convert.unstructure(section)
        return redact_secrets(data) if redact else data


_NOT_TABLES = frozenset({"sections", "source", "origins"})
"""`Config` fields that are not tables of the file."""


# -- loading ------------------------------------------------------------------------------------------------


def find_config_file(start: Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if env is None else env
    if env.get(ENV_CONFIG):
        path = Path(env[ENV_CONFIG]).expanduser()
        if not path.is_file():
            raise ConfigError(None, f"{ENV_CONFIG} names {path.name!r}, which is not a file")
        return path.resolve()
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    start: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    use_file: bool = True,
) -> Config:
    """Read the configuration. ``overrides`` is a nested mapping applied last (after the environment)."""
    env = os.environ if env is None else env
    if path is not None:
        source: Path | None = Path(path).expanduser().resolve()
        if not source.is_file():  # type: ignore[union-attr]
            raise ConfigError(None, f"config file {Path(path).name!r} does not exist")
    else:
        source = find_config_file(start, env) if use_file else None
    raw: dict[str, Any] = _read_toml(source) if source else {}
    origins: dict[str, str] = {}
    _merge(raw, env_overrides(env, origins))
    if overrides:
        origins.update((key, "arguments") for key in _leaves(overrides))
        _merge(raw, copy.deepcopy(dict(overrides)))
    return config_from_dict(raw, source=source, origins=origins)


def config_from_dict(
    raw: Mapping[str, Any], *, source: Path | None = None, origins: Mapping[str, str] | None = None
) -> Config:
    shown = source.name if source else None
    origins = dict(origins or {})
    core_names = {f.name for f in attrs.fields(Config)} - _NOT_TABLES
    core = {k: v for k, v in raw.items() if k in core_names}
    sections = {k: v for k, v in raw.items() if k not in core_names}
    for name, value in sections.items():
        if not isinstance(value, Mapping):
            raise ConfigError(name, "expected a table", source=_blame(name, origins, shown))
    config: Config = _structure(core, Config, "", shown, origins)
    sections = {k: dict(v) for k, v in sections.items()}
    return attrs.evolve(config, sections=sections, source=source, origins=origins)


def _structure(data: Any, cls: type[Any], prefix: str, shown: str | None, origins: Mapping[str, str]) -> Any:
    try:
        return _convert.structure(data, cls, error=ConfigError, prefix=prefix)
    except ConfigError as exc:
        raise ConfigError(exc.field, exc.reason, source=_blame(exc.field, origins, shown)) from None


def _blame(field: str | None, origins: Mapping[str, str], shown: str | None) -> str | None:
    """What set the key an error names (an environment variable, the arguments), else the file."""
    if field:
        for key, origin in origins.items():
            if field == key or field.startswith(f"{key}.") or key.startswith(f"{field}."):
                return origin
    return shown


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of a nested mapping's values (tables are descended into)."""
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        keys += _leaves(value, f"{dotted}.") if isinstance(value, Mapping) and value else [dotted]
    return keys


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(None, f"not valid TOML: {exc}", source=path.name) from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 text
        raise ConfigError(None, f"not UTF-8 text (byte {exc.start})", source=path.name) from None
    except OSError as exc:
        raise ConfigError(None, f"cannot read: {exc.strerror}", source=path.name) from None


def env_overrides(env: Mapping[str, str], origins: dict[str, str] | None = None) -> dict[str, Any]:
    """``ASSETRY_STORAGE__URL=x`` -> ``{"storage": {"url": "x"}}``; ``origins`` (if given) gets each
    dotted key's variable name, for errors to name the variable rather than the file."""
    result: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            raise ConfigError(name, "malformed override (use ASSETRY_<SECTION>__<KEY>)")
        parsed: Any = _parse_env_value(value)
        if keys == ["plugins", "block"] and isinstance(parsed, str):
            parsed = [item.strip() for item in parsed.split(",") if item.strip()]
        node = result
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = parsed
        if origins is not None:
            origins[".".join(keys)] = name
    return result


def _parse_env_value(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


# -- helpers ------------------------------------------------------------------------------------------------

_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(location: str) -> bool:
    return bool(_URL_RE.match(location)) and not location.startswith("file://")


def _resolve(location: str, base: Path) -> str:
    if is_url(location):
        return location
    if location.startswith("file://"):
        location = location[len("file://") :]
    return str((base / Path(location).expanduser()).resolve())


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if is_url(base) else str(Path(base) / name)


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp](?:ib?|b)?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}
MAX_SIZE = 2**63 - 1


def parse_size(value: str | int, *, field: str = "quota") -> int:
    """``2GB`` -> 2_000_000_000, ``500MiB`` -> 524_288_000, ``123`` -> 123. Negative sizes are errors."""
    if isinstance(value, bool):
        raise ConfigError(field, f"expected a size, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise ConfigError(field, f"{value!r} is not a size like '2GB', '500MiB' or '1048576'")
        unit = (match.group(2) or "").lower()
        binary = "i" in unit
        letter = unit[:1] if unit[:1] in "kmgtp" else ""
        factor = 1024 ** "bkmgtp".index(letter) if binary and letter else _UNITS[letter]
        # Exact: through a float, 9007199254740993 bytes became ...992 and 400 digits an OverflowError.
        size = int(Decimal(match.group(1)) * factor)
    else:
        raise ConfigError(field, f"expected a number of bytes (int) or a size like '2GB', got {value!r}")
    if size < 0:
        raise ConfigError(field, f"must be >= 0, got {value}")
    if size > MAX_SIZE:  # what the catalog's 64-bit size columns and filters hold
        raise ConfigError(field, f"{value!r} is more than the largest size, {MAX_SIZE:,} bytes")
    return size
