"""Outpost's Grafana dashboards, generated with grafana-foundation-sdk (Grafana 11.6 flavour).

`python dashboards/generate.py` writes the JSON in dashboards/json/, which is what ships;
tests/dashboards/test_dashboards.py fails when the two drift apart.
"""

from __future__ import annotations
