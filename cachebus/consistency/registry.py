"""The checker's own key registry: one namespace of items in groups.

``cachebus check`` measures cachebus itself, not a system's registry, so it brings its own
namespace: ids ``g{group}:{n}``, a pattern invalidation covering one group (``g3:*``).
"""

from __future__ import annotations

from cachebus.contracts.registry import Namespace, Registry

__all__ = ["CHECK_REGISTRY", "NAMESPACE"]

NAMESPACE = "items"

CHECK_REGISTRY = Registry(
    [
        Namespace(
            NAMESPACE,
            "{group}:{item}",
            30,
            owners=("check-writer",),
            readers=("checked",),
            description="the checker's items, in groups a pattern covers",
        )
    ],
    version="check-1",
)
