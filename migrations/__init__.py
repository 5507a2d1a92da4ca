"""The schema's SQL files. Installed, this folder is the package ``luminar_store.migrations`` (see ``setup.py``),
read by ``luminar_store.migrator`` through ``importlib.resources``; the runner ignores ``*.py`` files here."""
