"""Error types. Each is raised where the fact is known and names what was wrong."""

from __future__ import annotations


class AssetryError(Exception):
    """Base class for every error assetry raises on purpose."""


class ValidationError(AssetryError, ValueError):
    """Input was rejected before anything was written.

    ``field`` is the dotted name of the offending field or key (``seed``, ``extra.k``, ``storage.url``),
    or ``None`` when the problem is not tied to one field.
    """

    def __init__(self, field: str | None, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class ConfigError(ValidationError):
    """The configuration (file, environment or arguments) is invalid; ``field`` names the key."""

    def __init__(self, field: str | None, reason: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(field, reason)
        if source:
            self.args = (f"{source}: {self.args[0]}",)


class SourceError(ValidationError):
    """A file, directory or stream given for ingest or export cannot be used; ``field`` names it."""


class AssetNotFound(AssetryError, KeyError):
    """No asset with this id (in this tenant)."""

    def __init__(self, asset_id: str, *, hint: str | None = None) -> None:
        self.asset_id = asset_id
        self.hint = hint
        super().__init__(asset_id)

    def __str__(self) -> str:
        return f"no asset with id {self.asset_id!r}" + (f" ({self.hint})" if self.hint else "")


class AmbiguousId(AssetryError, KeyError):
    """An id prefix matches more than one asset."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        self.prefix = prefix
        self.matches = matches
        super().__init__(prefix)

    def __str__(self) -> str:
        shown = ", ".join(self.matches[:5])
        return f"id prefix {self.prefix!r} matches several assets: {shown}"


class BlobNotFound(AssetryError, KeyError):
    """The storage backend has no blob for this digest."""

    def __init__(self, digest: str, *, asset: str | None = None) -> None:
        self.digest = digest
        self.asset = asset
        """The asset whose content is missing (id and label), when known."""
        super().__init__(digest)

    def __str__(self) -> str:
        found = f"no blob stored for {self.digest}"
        return f"asset {self.asset}: {found}" if self.asset else found


class ContentMismatch(AssetryError):
    """Stored bytes do not hash to the digest that names them, or a source changed while being read."""


class PluginError(AssetryError):
    """A plugin could not be loaded, or two plugins claim the same backend name."""


class BackendError(AssetryError):
    """A storage or catalog backend failed (network, permissions, a missing bucket). The message names
    the backend and the operation, with credentials redacted; the original exception is not chained
    because its text may carry them."""


class StoreClosed(AssetryError):
    """The store was closed; open it again to use it."""


class StoreNotFound(AssetryError):
    """Opened with ``create=False``, and there is no store where the configuration points (its catalog
    does not exist). Nothing was created."""


class NotSupported(AssetryError):
    """The configured backend cannot do this (for example sign a download URL)."""
