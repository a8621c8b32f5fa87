"""The demo: the audited trading system in miniature, run under faults, checked at the end."""

from cachebus.demo.orchestrator import DemoConfig, DemoReport, run_demo

__all__ = ["DemoConfig", "DemoReport", "run_demo"]
