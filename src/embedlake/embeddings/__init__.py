"""Batch and streaming inference: a model's vectors of the live corpus, in durable shards.

- ``plan``: which documents a run embeds, in which shard (stored before the first shard);
- ``shards``: one shard embedded, written as Parquet and recorded with what it covers;
- ``batch``: a whole run, directly (``embed``) or as checkpointed steps and fan-outs
  (``embed_in_steps``, what the functions and the release build use);
- ``vectors``: reading the current vector of every live document back.
"""
