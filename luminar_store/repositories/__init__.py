"""Per-table repositories: raw, parameterized SQL held as module constants beside the class that runs it.

Every repository is constructed with a ``psycopg.AsyncConnection`` (so a caller can compose several repositories in
one transaction) and translates psycopg errors into ``luminar_store.errors`` at its boundary.
"""
