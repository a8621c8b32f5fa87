"""The consumer runtime: groups with acks, replay, claiming, dead letters, gap detection."""

__all__: list[str] = []
