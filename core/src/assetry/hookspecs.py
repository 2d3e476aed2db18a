"""Every hook assetry calls, in one place. Plugins implement them with ``@assetry.hookimpl``.

Hooks are called with keyword arguments only, and an implementation may accept fewer arguments than the
specification lists, so a specification can gain arguments without breaking plugins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from assetry.backends import CatalogBackend, StorageBackend
    from assetry.config import Config
    from assetry.content import Content
    from assetry.model import Asset, AssetDraft
    from assetry.store import Store

hookspec = pluggy.HookspecMarker("assetry")


# -- backends ---------------------------------------------------------------------------------------------


@hookspec
def assetry_storage_backends() -> Iterable[StorageBackend] | None:
    """Register blob storage backends.

    Return `assetry.backends.StorageBackend` objects. ``[storage] backend`` in the configuration picks one
    by name; two plugins registering the same name is an error.
    """


@hookspec
def assetry_catalog_backends() -> Iterable[CatalogBackend] | None:
    """Register catalog backends.

    Return `assetry.backends.CatalogBackend` objects. ``[catalog] backend`` picks one by name; two plugins
    registering the same name is an error.
    """


@hookspec
def assetry_config_sections() -> Mapping[str, type[Any]] | None:
    """Claim top-level configuration tables for a plugin.

    Return a mapping of table name to an attrs class. Core validates the table against the class (unknown
    keys and wrong types are errors naming the key) and exposes the instance as
    ``config.sections[name]``. Without a claim, an unknown table is an error.
    """


# -- lifecycle ------------------------------------------------------------------------------------------


@hookspec
def assetry_ingest(draft: AssetDraft, content: Content, config: Config) -> Mapping[str, Any] | None:
    """Enrich an asset before it is stored: sniff its media type, read its dimensions or the generation
    parameters embedded in the file, tag it.

    Return a mapping of draft field names to values (``media_type``, ``width``, ``prompt``, ``seed``,
    ``tags``, ``extra``, ...) or None. What the caller gave explicitly wins over what a plugin extracts;
    ``tags`` are merged, ``extra`` and ``parameters`` are merged key by key. The merged draft is validated
    again, so a plugin cannot smuggle an invalid value in.

    :param draft: the caller's validated draft (read-only).
    :param content: the content; ``content.head()`` for sniffing, ``content.open()`` to read it all.
    :param config: the store's configuration (plugin tables in ``config.sections``).
    """


@hookspec
def assetry_index(assets: Sequence[Asset], store: Store) -> None:
    """Called after a batch of assets has been committed to the catalog.

    For plugins that keep their own indexes or react to new assets (notify, compute derived data later).
    The catalog's own text and vector indexes are already up to date when this runs.

    :param assets: the committed records, in ingest order.
    :param store: the store they were added to.
    """


@hookspec
def assetry_access(asset: Asset, action: str, actor: str | None) -> None:
    """Called for every access to an asset's content (``read``, ``open``, ``export``, ``url``) and for
    explicit uses recorded with `Store.record_use`.

    Usage tracking is a plugin on this hook; it must only buffer, never write per call.

    :param asset: the record accessed.
    :param action: what was done.
    :param actor: who did it, if known.
    """


@hookspec
def assetry_evict(assets: Sequence[Asset], reason: str, dry_run: bool) -> Iterable[str] | None:
    """Called with assets chosen for eviction, before anything is removed.

    Return ids to spare (a veto), or None. A plugin that archives content does it here when not
    ``dry_run``. Every plugin sees the same list; an id spared by any plugin is kept.

    :param assets: the records about to be evicted.
    :param reason: why (``quota``, ``delete``).
    :param dry_run: True when nothing will be removed (report only).
    """


# -- command line -----------------------------------------------------------------------------------------


@hookspec
def assetry_cli_commands(cli: click.Group) -> None:
    """Add commands to the ``assetry`` command line.

    :param cli: the top-level click group; call ``cli.add_command`` or use ``@cli.command()``.
    """
