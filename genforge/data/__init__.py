"""Data: readers, tokenizers, token shards with a manifest, and the batches training draws."""
