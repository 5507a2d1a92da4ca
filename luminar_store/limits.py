"""Every bound and tolerance of the data layer, defined once and imported by the modules that check or use it.

Changing a value here changes it for the facade, the repositories, the statistics and the synthetic loader at once;
no other module defines its own copy (``tests/test_one_definition.py`` checks that).

Example::

    >>> from luminar_store.limits import MAX_LIMIT, AGREEMENT_TOLERANCE
    >>> MAX_LIMIT, AGREEMENT_TOLERANCE
    (10000, 0.1)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = [
    "MAX_LIMIT",
    "MAX_HOURS",
    "MAX_DAYS",
    "MAX_RADIUS_M",
    "MAX_UID",
    "MAX_ROUND",
    "MAX_HOTKEY_LENGTH",
    "MAX_STAKE",
    "MAX_CLAIM",
    "MAX_STALE_MINUTES",
    "DEFAULT_CLAIM_LEASE_MINUTES",
    "MAX_ASSIGN",
    "MAX_SCORES",
    "MAX_SCORE_NAME",
    "GRID_DEGREES",
    "MAX_GRID_CELLS",
    "HOTSPOT_MIN_INCIDENTS",
    "DEFAULT_CELL_M",
    "MIN_CELL_M",
    "MAX_CELL_M",
    "CONFIDENCES",
    "AGREEMENT_TOLERANCE",
    "SUCCESS_THRESHOLD",
    "MAX_FUTURE_SKEW",
    "MIN_TIMESTAMP",
    "MAX_VERTICES",
    "MAX_RINGS",
    "MAX_CRIME_TYPES",
    "MAX_SOURCE_REPORTS",
    "MAX_IDEMPOTENCY_KEY",
    "MAX_ROUND_KEY",
    "RECENT_ROUND_KEYS",
    "GEOJSON_DECIMALS",
    "DEFAULT_ZONE_DAYS",
    "DEFAULT_TREND_WEEKS",
    "MAX_TREND_WEEKS",
    "DEFAULT_ANALYSIS_DAYS",
    "DEFAULT_CLUSTER_EPS_M",
    "MIN_CLUSTER_EPS_M",
    "MAX_CLUSTER_EPS_M",
    "DEFAULT_CLUSTER_MIN_POINTS",
    "MIN_CLUSTER_MIN_POINTS",
    "MAX_CLUSTER_MIN_POINTS",
    "DEFAULT_NEAR_REPEAT_M",
    "MAX_NEAR_REPEAT_M",
    "DEFAULT_NEAR_REPEAT_HOURS",
    "MAX_NEAR_REPEAT_HOURS",
    "DEFAULT_SAME_ADDRESS_M",
]

#: Most rows one listing query returns.
MAX_LIMIT = 10_000
#: Longest look-back in hours (10 years) and in days, for every windowed query (events, consensus accuracy).
MAX_HOURS = 24 * 3650
MAX_DAYS = 3650
#: Largest search radius and cluster radius in metres (1,000 km; the tables' CHECKs allow the same).
MAX_RADIUS_M = 1_000_000.0
#: Largest miner or validator uid (an ``integer`` column).
MAX_UID = 2**31 - 1
#: Largest consensus round number.
MAX_ROUND = 2**31 - 1
#: Longest hotkey the performance tables accept.
MAX_HOTKEY_LENGTH = 128
#: Largest validator stake accepted (a sanity bound far above any real stake; the column is a float8).
MAX_STAKE = 1e15
#: Most reports one ``claim()`` hands out, and the longest claim age ``release_stale()`` accepts (30 days).
MAX_CLAIM = 1_000
MAX_STALE_MINUTES = 30 * 24 * 60
#: How long a claim holds its reports when ``LUMINAR_CLAIM_LEASE_MINUTES`` is not set: a claim older than this is
#: taken back (the report is ``pending`` again) by the next ``claim()``.
DEFAULT_CLAIM_LEASE_MINUTES = 30
#: Most events one ``assign_events`` call may move into a cluster.
MAX_ASSIGN = 10_000
#: Most scores one consensus record may carry, and the longest score name.
MAX_SCORES = 64
MAX_SCORE_NAME = 64
#: Side of the stored grid cells (``cell_row``/``cell_col`` of ``crime_events``) in degrees; the default hotspot cell.
GRID_DEGREES = 0.01
#: Most grid cells a radius query reads one by one; a larger box goes through the GiST index instead.
MAX_GRID_CELLS = 256
#: The fewest incidents a cell needs to be listed by ``get_crime_hotspots`` by default: a cell of one incident is a
#: place where something happened, not a hotspot (on sample data 65 of 76 cells held one).
HOTSPOT_MIN_INCIDENTS = 2
#: Side of the equal-area Gi* cells in metres (EPSG:6933 squares; ``luminar_cell`` in SQL): default and bounds.
DEFAULT_CELL_M = 400.0
MIN_CELL_M = 50.0
MAX_CELL_M = 50_000.0
#: The confidence levels (percent) a Gi* cell is classified at; 0 is "not significant".
CONFIDENCES = (0, 90, 95, 99)
#: A validator's final score agrees with its round when it lies within this distance of the round's mean (the SQL
#: function ``score_agrees`` adds 1e-9 for binary rounding; every caller passes this tolerance to it).
AGREEMENT_TOLERANCE = 0.1
#: A miner's round is successful when its overall score reaches this (the ``active_miners`` view's definition).
SUCCESS_THRESHOLD = 0.5
#: How far in the future a timestamp may lie (clock skew between nodes) before it is refused.
MAX_FUTURE_SKEW = timedelta(minutes=5)
#: The earliest time accepted anywhere: nothing the network records happened before 1970 (a year-1 datetime with a
#: +14:00 offset is stored as a BC time that every later read of it fails on).
MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Most vertices of a risk zone's boundary (all rings together), most rings (the shell and its holes), and most
#: crime types one zone may list.
MAX_VERTICES = 10_000
MAX_RINGS = 100
MAX_CRIME_TYPES = 64
#: Most reports one crime event may name (``related_reports`` and ``source_reports`` together).
MAX_SOURCE_REPORTS = 10_000
#: Longest idempotency key a writer may give an event (``CrimeEvent.idempotency_key``).
MAX_IDEMPOTENCY_KEY = 200
#: Longest round key of a miner's scoring round, and how many recent round keys a miner's record remembers (the
#: ``miner_recent_round_keys_bounded`` CHECK of ``miner_performance`` allows the same).
MAX_ROUND_KEY = 200
RECENT_ROUND_KEYS = 32
#: Decimals of the coordinates the GeoJSON export and the map write (6: ~0.1 m, as the Gi* cells' corners and
#: centres are rounded in SQL).
GEOJSON_DECIMALS = 6
#: Risk zone analysis (``luminar_analyze_risk_zones``): the Gi* window in days whose hot cells make the zones (and
#: whose incidents are a zone's recent incidents and density), and how many weekly counts its trend test reads by
#: default and at most (10 years). Fewer than 8 weeks of data is "insufficient data" (SQL:
#: ``luminar_trend_min_weeks()``).
DEFAULT_ZONE_DAYS = 28
DEFAULT_TREND_WEEKS = 12
MAX_TREND_WEEKS = 520
#: The window (days back from now) the database's analyses (clusters, near repeats) look at by default.
DEFAULT_ANALYSIS_DAYS = 30
#: DBSCAN over incidents (``luminar_analyze_clusters``): the neighbourhood radius in metres (great-circle) and the
#: fewest incidents within it, itself included, that make an incident a core one; defaults and accepted bounds.
DEFAULT_CLUSTER_EPS_M = 200.0
MIN_CLUSTER_EPS_M = 1.0
MAX_CLUSTER_EPS_M = 10_000.0
DEFAULT_CLUSTER_MIN_POINTS = 5
MIN_CLUSTER_MIN_POINTS = 2
MAX_CLUSTER_MIN_POINTS = 10_000
#: Near repeats (``luminar_flag_near_repeats``): an incident within this distance (metres) and time (hours) after an
#: earlier one of the same type is a near repeat (Ratcliffe: risk raised within a few hundred metres and days), unless
#: it lies within the same-address distance of it (a repeat at the same address); defaults and upper bounds.
DEFAULT_NEAR_REPEAT_M = 200.0
MAX_NEAR_REPEAT_M = 5_000.0
DEFAULT_NEAR_REPEAT_HOURS = 168.0
MAX_NEAR_REPEAT_HOURS = 24.0 * 365
DEFAULT_SAME_ADDRESS_M = 10.0
#: Group commit of ``store_crime_event`` (``luminar_store.group_commit``): the most concurrent calls sent together in
#: one statement, and how many such statements (each on its own pooled connection) may be under way at once. A call
#: arriving while fewer are under way, with none waiting, goes straight through on its own. Measured on the 2-core
#: machine (64 tasks, 50,000 events, against asyncpg's pool without reset in the same run): 1 flush at a time 2.2-2.6x,
#: 2 at a time 1.8-2.2x, 4 about 1.9x: the server's backends and the client share the cores, and fewer, larger
#: groups cost less. 2 keeps a second caller from waiting behind the first.
GROUP_COMMIT_MAX_CALLS = 64
GROUP_COMMIT_FLUSHES = 2
