"""The production pg_hba.conf template, shipped in the wheel as ``luminar_store.init_scripts`` (setup.py); the
shell scripts beside it are for the database containers and are not installed."""
