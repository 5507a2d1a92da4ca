"""Dataclasses for inputs and records (attribute access: ``event.event_id``, ``stats.success_rate``).

Inputs may also be given as plain mappings with the same field names; the facade accepts both.
"""

from __future__ import annotations

# --- scoring records (miners, validators, consensus, clusters, zones, audit) ---
