"""The cache core: pooled Redis clients, value codec, cache API, SCAN+UNLINK invalidation."""

__all__: list[str] = []
