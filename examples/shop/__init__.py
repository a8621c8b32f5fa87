"""A shop's catalog: an async FastAPI service (``api``) and a sync worker (``worker``) sharing a
registry file (``cachebus.toml``) and a SQLite database (``store``)."""
