"""The environments a setting can name, their defaults, and what each allows: the one rule table.

============  =========================  ==================================  ===========  ========  ==============
environment   server                     database / role                     runs here    reset     sample data
============  =========================  ==================================  ===========  ========  ==============
local         localhost:5432             luminar_local / luminar_dev         yes          yes       yes
testing       localhost:5433             luminar_test / luminar_dev          yes          yes       yes
testnet       localhost:5432             luminar_testnet / luminar_test      yes          yes       no
staging       localhost:5432             luminar_staging / luminar_subnet    no           no        no
production    central-db.luminar.network luminar_production / luminar_subnet no           no        no
============  =========================  ==================================  ===========  ========  ==============

The local database is split as production is: ``luminar_owner`` owns the schema (migrations, operators' commands),
``luminar_dev`` is the nodes' login (a member of the ingest, miner and validator groups), and the cluster's
superuser only provisions. Elsewhere ``LUMINAR_DB_OWNER`` names the owner; unset, the one login does both.
Reporters' ids are stored pseudonymised (``luminar_store.privacy``) by default in testnet, staging and production,
and as sent in local and testing, so that demos show the data as it was sent.

"runs here": ``luminar-db db start|stop`` may run the server on this machine. "reset": commands that drop the whole
database (``reset``, ``db reset``) may run. Production additionally requires TLS and a real password. The testnet
defaults are those of the network's ``.env.testnet`` (a database on the node's own machine).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Environment", "ENVIRONMENTS", "DEV_PASSWORD", "environment"]

DEV_PASSWORD = "dev_password"


@dataclass(frozen=True)
class Environment:
    """One environment: its defaults, the prefix of its own variables, and what it allows."""

    name: str
    #: Prefix of the variables that belong to this environment alone (``LUMINAR_TEST_DB_NAME``), or None.
    prefix: str | None
    host: str
    port: int
    database: str
    user: str
    password: str
    sslmode: str
    pool_size: int
    max_overflow: int
    pool_timeout: float
    pool_recycle: float
    runs_here: bool = False
    resettable: bool = False
    sample_data: bool = False
    #: The role that owns the schema and runs the migrations and operators' commands, when it is not the nodes'
    #: login (``LUMINAR_DB_OWNER``); None: one login does both.
    owner: str | None = None
    #: Reporters' ids stored pseudonymised unless ``LUMINAR_PSEUDONYMIZE`` says otherwise.
    pseudonymize: bool = False

    @property
    def production(self) -> bool:
        return self.name == "production"


_TABLE = (
    Environment("local", "LUMINAR_LOCAL_DB_", "localhost", 5432, "luminar_local", "luminar_dev", DEV_PASSWORD,
                "disable", 10, 5, 30.0, 3600.0, runs_here=True, resettable=True, sample_data=True,
                owner="luminar_owner"),
    Environment("testing", "LUMINAR_TEST_DB_", "localhost", 5433, "luminar_test", "luminar_dev", DEV_PASSWORD,
                "disable", 2, 3, 10.0, 600.0, runs_here=True, resettable=True, sample_data=True),
    Environment("testnet", "LUMINAR_TESTNET_DB_", "localhost", 5432, "luminar_testnet", "luminar_test",
                "testnet_password", "disable", 10, 5, 20.0, 3600.0, runs_here=True, resettable=True,
                pseudonymize=True),
    Environment("staging", "LUMINAR_STAGING_DB_", "localhost", 5432, "luminar_staging", "luminar_subnet", "",
                "require", 20, 10, 60.0, 7200.0, pseudonymize=True),
    Environment("production", None, "central-db.luminar.network", 5432, "luminar_production", "luminar_subnet", "",
                "require", 50, 20, 60.0, 7200.0, pseudonymize=True),
)
_BY_NAME = {e.name: e for e in _TABLE}
ENVIRONMENTS = tuple(_BY_NAME)


def environment(name: str) -> Environment:
    """The environment called ``name`` (already normalised). Raises ``KeyError`` for an unknown one."""
    return _BY_NAME[name]
