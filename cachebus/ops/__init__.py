"""Operations commands: ``status``, ``tail``, ``dlq``, ``doctor``, ``schema``.

Each reads ``CACHEBUS_*`` settings like ``cachebus consume``, prints rich tables on a terminal
and one JSON document with ``--json`` (``tail --json``: JSON Lines), and exits 0 when done,
1 when something is wrong, 2 on a usage error.
"""
