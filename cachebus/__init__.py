"""cachebus: reliable cache invalidation across services over Redis Streams.

The command-line application lives in :mod:`cachebus.cli`; the library layers are the
``contracts``, ``cachebus.core``, ``producers`` and ``consumers`` packages.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
