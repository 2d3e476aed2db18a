"""Defer the import of lance_namespace's generated REST client, which a catalog never calls.

`import lancedb` (0.40) imports `lance_namespace`, whose request and response models live in the
generated `lance_namespace_urllib3_client` package, and that package's ``__init__`` imports every REST
API module as well: ~0.9 s of pydantic ``validate_call`` wrappers, over half of the ~1.6 s LanceDB takes
to import, paid by every command-line call. Lance made the same import lazy in its own package
(lance-format/lance#9273); until LanceDB does too, `defer_rest_client` enters the package in
`sys.modules` without running its ``__init__``. Its submodules, the models LanceDB does import, load as
usual from the package's path; the first attribute looked up on the package itself runs the real
``__init__``, so code that uses the REST client gets all of it.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

PACKAGE = "lance_namespace_urllib3_client"


def defer_rest_client() -> None:
    """Before the first `import lancedb`: enter `PACKAGE` with its ``__init__`` deferred. Does nothing
    if it is already imported or is not a package that can be loaded this way."""
    if PACKAGE in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return
    loader = spec.loader if spec is not None else None
    if spec is None or loader is None or not spec.submodule_search_locations:
        return
    package = importlib.util.module_from_spec(spec)
    initialised = False

    def __getattr__(name: str) -> Any:  # a module's __getattr__ (PEP 562)
        nonlocal initialised
        if initialised:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")
        initialised = True
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[PACKAGE] = package
