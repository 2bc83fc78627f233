"""Search: build an index from a model's vectors, load what a release serves, and answer queries.

- ``build``: an index built from a model's (or a release's reduced) vectors, stored in the lake;
- ``load``: what to serve (release, alias, model or index) and loading its index;
- ``searcher``: the :class:`~embedlake.search.searcher.Searcher` (dense, by vector, more like this,
  hybrid), documents hydrated from the catalog with tombstones followed;
- ``bm25``, ``hybrid``: the lexical side and how it is fused with the dense one.

A query is always embedded by the model the index was built from, so vectors of two models never meet.
"""
