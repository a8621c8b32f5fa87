"""Example applications on cachebus (tested by tests/examples, type-checked by make typecheck)."""
