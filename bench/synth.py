"""Large synthetic catalogs, written straight to the LanceDB tables as Arrow batches.

Ingesting a million real files would take an hour and measure the disk, not the catalog; these rows have
fake (unique, well-formed) digests and no blobs behind them. Vectors are clustered (a mixture of Gaussians,
normalised) because real embeddings are: uniform random vectors have no neighbourhoods at all and are a
worst case no embedding model produces.

Columns used by the workloads' filters:
- ``kind``: ``image`` for 25% of rows (the broad filter), ``file`` otherwise;
- ``project``: ``p000`` .. ``p199``, each 0.5% of rows (the selective filter is one project);
- ``prompt``: a few words from a small vocabulary, so full-text queries have realistic hit lists.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from assetry_lancedb import rows

BATCH = 50_000
CLUSTERS = 2_000
NOISE = 1.0
PROJECTS = 200

WORDS = (
    "cat",
    "dog",
    "castle",
    "forest",
    "sunset",
    "portrait",
    "robot",
    "city",
    "night",
    "river",
    "mountain",
    "ocean",
    "dragon",
    "knight",
    "flower",
    "garden",
    "winter",
    "summer",
    "neon",
    "cyberpunk",
    "watercolor",
    "oil",
    "sketch",
    "anime",
    "photo",
    "macro",
    "aerial",
    "vintage",
    "noir",
    "astronaut",
    "desert",
    "jungle",
    "temple",
    "bridge",
    "train",
    "ship",
    "storm",
    "rain",
    "snow",
    "fire",
    "ice",
    "crystal",
    "golden",
    "silver",
    "red",
    "blue",
    "green",
    "purple",
    "orange",
    "black",
    "white",
    "tiny",
    "giant",
    "ancient",
    "futuristic",
    "cozy",
    "haunted",
    "glowing",
)


class Embeddings:
    """Deterministic clustered unit vectors: the same seed gives the same centres and points."""

    def __init__(self, dimension: int, seed: int = 7) -> None:
        self.dimension = dimension
        rng = np.random.default_rng(seed)
        self.centres = rng.standard_normal((CLUSTERS, dimension)).astype(np.float32)
        self.seed = seed

    def batch(self, start: int, count: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        which = rng.integers(0, CLUSTERS, size=count)
        points = self.centres[which] + NOISE * rng.standard_normal((count, self.dimension), dtype=np.float32)
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        return points

    def queries(self, count: int) -> np.ndarray:
        """Fresh points from the same distribution (not in the catalog), as real queries are."""
        return self.batch(10**9, count)


def _hex_ids(count: int, nbytes: int) -> list[str]:
    raw = secrets.token_bytes(count * nbytes)
    return [raw[i * nbytes : (i + 1) * nbytes].hex() for i in range(count)]


def asset_batch(schema: pa.Schema, start: int, count: int, vectors: np.ndarray | None) -> pa.Table:
    """Rows ``start .. start+count`` of a synthetic catalog, in the ``assets`` table layout."""
    rng = np.random.default_rng([11, start])
    n = count
    ids = _hex_ids(n, 16)
    digests = ["blake3:" + h for h in _hex_ids(n, 32)]
    is_image = (np.arange(start, start + n) % 4) == 0
    kinds = np.where(is_image, "image", "file")
    media = np.where(is_image, "image/png", "application/octet-stream")
    projects = [f"p{(i * 7919) % PROJECTS:03d}" for i in range(start, start + n)]
    words = np.array(WORDS)
    picks = rng.integers(0, len(words), size=(n, 4))
    prompts = [" ".join(row) for row in words[picks]]
    labels = [f"gen-{i:07d}.png" for i in range(start, start + n)]
    tag_pool = ["draft", "final", "upscaled", "nsfw-checked"]
    tags = [[tag_pool[i % 4]] for i in range(start, start + n)]
    now = datetime.now(UTC)
    created = [now - timedelta(seconds=int(s)) for s in rng.integers(0, 365 * 86400, size=n)]
    sizes = rng.integers(10_000, 2_000_000, size=n)
    search_text = [f"{label} {prompt} {t[0]}" for label, prompt, t in zip(labels, prompts, tags, strict=True)]
    columns: dict[str, Any] = {
        "id": ids,
        "label": labels,
        "kind": kinds.tolist(),
        "media_type": media.tolist(),
        "size": sizes,
        "digest": digests,
        "status": ["available"] * n,
        "created_at": created,
        "created_by": [None] * n,
        "tenant": ["default"] * n,
        "project": projects,
        "tags": tags,
        "model": ["sdxl-1.0"] * n,
        "prompt": prompts,
        "negative_prompt": [None] * n,
        "seed": rng.integers(0, 2**31, size=n),
        "parameters": [None] * n,
        "agent_id": [None] * n,
        "conversation_id": [None] * n,
        "message_id": [None] * n,
        "tool_call_id": [None] * n,
        "task_id": [None] * n,
        "parent_ids": [[]] * n,
        "reference_ids": [[]] * n,
        "width": np.where(is_image, 1024, None).tolist(),
        "height": np.where(is_image, 1024, None).tolist(),
        "duration": [None] * n,
        "extra": [None] * n,
        "pinned": [False] * n,
        "search_text": search_text,
    }
    columns["size"] = sizes.tolist()
    columns["seed"] = columns["seed"].tolist()
    names = list(columns)
    columns["record"] = [
        rows.encode_record(dict(zip(names, values, strict=True)))
        for values in zip(*(columns[name] for name in names), strict=True)
    ]
    arrays = []
    for field in schema:
        if field.name == "vector":
            if vectors is None:
                arrays.append(pa.nulls(n, type=field.type))
            else:
                flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, field.type.list_size))
        else:
            arrays.append(pa.array(columns[field.name], type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def fill(
    store: Any, count: int, *, embeddings: Embeddings | None, keep_vectors: bool = False
) -> tuple[list[str], np.ndarray | None]:
    """Append ``count`` synthetic rows to a store's catalog in batches (one commit per batch).

    Returns the ids in row order, and the vectors (float32) when ``keep_vectors``, for exact search.
    """
    catalog = store.catalog
    table = catalog._assets  # the Arrow path: no Asset objects for a million rows
    schema = catalog._assets_schema
    ids: list[str] = []
    kept: np.ndarray | None = None
    if keep_vectors and embeddings is not None:
        kept = np.empty((count, embeddings.dimension), dtype=np.float32)
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        vectors = embeddings.batch(start, n) if embeddings is not None else None
        if kept is not None and vectors is not None:
            kept[start : start + n] = vectors
        batch = asset_batch(schema, start, n, vectors)
        ids.extend(batch.column("id").to_pylist())
        table.add(batch)
    return ids, kept


def row_masks(count: int) -> dict[str, np.ndarray]:
    """Which synthetic rows each bench filter keeps (mirrors `asset_batch`)."""
    index = np.arange(count)
    return {
        "none": np.ones(count, dtype=bool),
        "broad": (index % 4) == 0,
        "selective": ((index * 7919) % PROJECTS) == 0,
    }
