"""The operator's side: what commands run, beside the nodes' facade, with one door to the server.

=================  ==================================================================================
``connect``        the one way commands open connections; the only "cannot reach" text; missing database typed
``provision``      create, drop, reset, set up (role, database, PostGIS, migrations): the one module that does it
``cluster``        the embedded local PostgreSQL (initdb, start, stop, status) when Docker is not there
``compose``        the Docker Compose database of docker-compose.yml
``status``         the one status report (``status`` and ``db status``)
``backup``         pg_dump, the tools and their error reasons, password only in the tools' environment
``restore``        pg_restore in one transaction as the database's owner: ownership and grants kept
``retention``      deleting data older than the retention period, in batches
``stats``          the specification's key metrics (figures defined once, in SQL, shared with the node side)
``synthetic``      realistic sample data (``populate_sample_data``), written in transactional COPY batches
=================  ==================================================================================
"""

__all__ = [
    "backup", "cluster", "compose", "connect", "provision", "restore", "retention", "stats", "status", "synthetic",
]
