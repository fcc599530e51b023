"""Outpost: self-hosted hybrid runbook workers, observability first."""

__version__ = "0.1.0"
