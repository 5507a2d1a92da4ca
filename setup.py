"""Packaging is declared in setup.cfg. This file says the one thing setup.cfg cannot say next to ``packages = find:``:
the top-level ``migrations/`` folder (the client's layout) also ships as the package ``luminar_store.migrations``,
whose SQL files ``luminar_store.migrator`` reads with ``importlib.resources``; and the production ``pg_hba.conf``
template of ``init-scripts/`` as ``luminar_store.init_scripts`` (``luminar-db tls prepare-server`` outside the
repository)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["luminar_store", "luminar_store.*"]), "luminar_store.migrations",
              "luminar_store.init_scripts"],
    package_dir={"luminar_store.migrations": "migrations", "luminar_store.init_scripts": "init-scripts"},
    package_data={"luminar_store.migrations": ["*.sql"], "luminar_store.init_scripts": ["*.template"]},
)
