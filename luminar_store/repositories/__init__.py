"""Per-table repositories: raw, parameterized SQL held as module constants beside the class that runs it.

One style for all of them (``_base.Repository``): built on a ``psycopg.AsyncConnection`` (so a caller can compose
several repositories in one transaction) or on a connection source such as ``Database.connection`` (borrowed per
call, after the call's checks); every argument checked once, by the method that binds it, before any SQL; named
``%(name)s`` parameters; each row shape written once (``EVENT_COLUMNS``, ``REPORT_COLUMNS``, ``MINER_COLUMNS`` ...);
psycopg errors translated into ``luminar_store.errors`` at the boundary. Bounds come from ``luminar_store.limits``.
"""
