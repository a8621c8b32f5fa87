"""Wiring cachebus into applications.

* :mod:`cachebus.integrations.runtime`: :class:`~cachebus.integrations.runtime.CachebusRuntime`,
  what a service needs in one object (its consumers through the composition root, a cache to
  read through, its L1, a producer), started and stopped together. No framework needed.
* :mod:`cachebus.integrations.fastapi`: a FastAPI lifespan for it, dependencies handing a
  route the cache and the producer, and a readiness route (the ``fastapi`` extra).
"""
