"""How both engines index and search the case vectors: one set of numbers for edge and server.

Measured with `bench/store_bench.py --full --ef 64 128 256 512` (208k cases, OpenPath's size,
512-d): the bot's query through the index is 6x faster than exact search through the same engine and
11x faster than numpy brute force, at recall@10 >= 0.99. The values and why:

- HNSW `m=16`, `ef_construct=100`: Qdrant's defaults. Search `hnsw_ef=256`: at 208k cases the bot's
  query (privacy filter, own post skipped, reposts collapsed) reaches recall@10 0.991 against exact
  search (128: 0.987, 512: 0.996 at 1.3x the time), on embedding-like data.
- `payload_m=16` with HNSW links only for `guild_id` and `scope` (`HNSW_LINKED_FIELDS`): every search
  filters on these two; the extra per-value links keep the graph connected inside one server's cases
  and the shared ones, so a filtered traversal does not strand. The other indexed fields are looked up
  by value only (deletion, dedup), so their graphs would cost build time for nothing.
- Scalar int8 quantization, kept in RAM, quantile 0.99: a quarter of the memory, and distance
  computations in integers; `rescore` with `oversampling=2` re-ranks twice `k` candidates on the float
  vectors, so the scores people see are exact cosines.
- `full_scan_threshold` 10,000 KB (Qdrant's default): a filter matching fewer vectors than that is
  answered by brute force over the payload index's matches, which is both exact and fast there.

`guild_id` is an integer field; Qdrant's `is_tenant` exists only for keyword and UUID indexes, and the
bot's filter is "this server OR shared", which is no single tenant, so tenant partitioning does not
apply. The per-value HNSW links above are the tenant-style index that does.
"""

from __future__ import annotations

from typing import Final

HNSW_M: Final = 16
HNSW_EF_CONSTRUCT: Final = 100
HNSW_PAYLOAD_M: Final = 16
FULL_SCAN_THRESHOLD_KB: Final = 10_000

SEARCH_HNSW_EF: Final = 256
"""Candidate list size of an HNSW search (Qdrant uses at least the limit asked for)."""

QUANTIZATION_QUANTILE: Final = 0.99
RESCORE_OVERSAMPLING: Final = 2.0

HNSW_LINKED_FIELDS: Final = frozenset({"guild_id", "scope"})
"""Payload fields whose values get their own HNSW links (every search filters on them)."""

AUTO_OPTIMIZE_POINTS: Final = 10_000
"""The embedded engine has no background optimizer: once this many points wait unindexed (searched by
brute force meanwhile, about 1 ms per 10k), an upsert builds their index before it returns."""
