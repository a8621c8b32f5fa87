"""The producer library: services publish invalidations to the stream through it."""

__all__: list[str] = []
