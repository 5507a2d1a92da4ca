"""Settings: which server and database a command or node uses, its TLS and pool, per environment.

``load_settings()`` applies one rule (see ``luminar_store.config.settings``); ``environments`` holds the table of
environments and what each allows; ``variables`` knows every variable name read and where each value came from.
"""

from luminar_store.config.environments import DEV_PASSWORD, ENVIRONMENTS, Environment, environment
from luminar_store.config.settings import DEFAULT_RETENTION_DAYS, SSL_MODES, Settings, load_settings
from luminar_store.config.variables import load_dotenv_file, loaded_dotenv

__all__ = ["ENVIRONMENTS", "DEV_PASSWORD", "DEFAULT_RETENTION_DAYS", "SSL_MODES", "Environment", "Settings",
           "environment", "load_settings", "load_dotenv_file", "loaded_dotenv"]
