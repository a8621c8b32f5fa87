"""The demo's own key registry: package data (``registry.toml`` beside this module).

The library ships no namespace; the trading system of the demo declares its own, in the same
kind of file any system writes. ``cachebus demo --registry PATH`` runs the demo on another
file, which must declare the namespaces the demo's services use.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from cachebus.contracts.errors import ConfigError
from cachebus.contracts.registry import Registry

__all__ = ["DEMO_REGISTRY_FILE", "SERVICES", "demo_registry", "services_of"]

#: Where the file is inside the package (shown by errors and `cachebus registry show`).
DEMO_REGISTRY_FILE = "cachebus/demo/registry.toml"
#: The consuming services of the demo; each caches the namespaces whose readers name it.
SERVICES = ("bot", "indexer")
_NEEDED = ("positions", "market", "prices")


@functools.cache
def _builtin() -> Registry:
    text = resources.files("cachebus.demo").joinpath("registry.toml").read_text("utf-8")
    return Registry.from_toml(text, source=DEMO_REGISTRY_FILE)


def demo_registry(path: str | Path | None = None) -> Registry:
    """The demo's registry, or the one at ``path`` (checked to hold what the demo uses)."""
    registry = _builtin() if not path else Registry.from_file(path)
    missing = [name for name in _NEEDED if name not in registry]
    if missing:
        raise ConfigError(
            f"the demo needs the namespaces {', '.join(_NEEDED)}; {registry.source} lacks "
            f"{', '.join(missing)}"
        )
    for service in SERVICES:
        if not registry.read_by(service):
            raise ConfigError(f"no namespace of {registry.source} names {service!r} as a reader")
    return registry


def services_of(registry: Registry) -> dict[str, frozenset[str]]:
    """Each consuming service and the namespaces it caches (its group's scope)."""
    return {service: registry.read_by(service) for service in SERVICES}
