"""The one rule that chooses a command's target: --env selects an environment's whole target, a value written for
another environment never redirects it, and the variable names of the network's own .env files are read."""

from __future__ import annotations

import logging

import pytest
from dotenv import dotenv_values

from luminar_store.config import ENVIRONMENTS, environment, load_settings
from luminar_store.config.variables import KNOWN, DotenvRecord
from luminar_store.errors import ConfigError

# The database part of the network's node .env files (.env.local, .env.testnet, .env.production), as operators
# have them.
NETWORK_DOTENVS = {
    ".env.local": {"LUMINAR_ENV": "local", "LUMINAR_LOCAL_DB_HOST": "localhost", "LUMINAR_LOCAL_DB_PORT": "5432",
                   "LUMINAR_LOCAL_DB_NAME": "luminar_local", "LUMINAR_LOCAL_DB_USER": "luminar_dev",
                   "LUMINAR_LOCAL_DB_PASSWORD": "dev_password", "SSL_MODE": "disable", "DB_POOL_SIZE": "10",
                   "DB_MAX_OVERFLOW": "5", "DB_POOL_TIMEOUT": "20", "DB_POOL_RECYCLE": "3600",
                   "OPENAI_MODEL": "gpt-3.5-turbo", "BATCH_SIZE": "10"},
    ".env.testnet": {"LUMINAR_ENV": "testnet", "LUMINAR_DB_HOST": "localhost", "LUMINAR_DB_PORT": "5432",
                     "LUMINAR_DB_NAME": "luminar_testnet", "LUMINAR_DB_USER": "luminar_test",
                     "LUMINAR_DB_PASSWORD": "testnet_password", "SSL_MODE": "disable", "DB_POOL_SIZE": "10",
                     "DB_MAX_OVERFLOW": "5", "DB_POOL_TIMEOUT": "20", "SUBNET_NETUID": "414"},
    ".env.production": {"LUMINAR_ENV": "production", "LUMINAR_DB_HOST": "central-db.luminar.network",
                        "LUMINAR_DB_PORT": "5432", "LUMINAR_DB_NAME": "luminar_production",
                        "LUMINAR_DB_USER": "luminar_subnet", "LUMINAR_DB_PASSWORD": "your_production_password_here",
                        "LUMINAR_DB_READ_HOST": "replica-db.luminar.network", "SSL_MODE": "require",
                        "DATABASE_SSL_CERT": "/path/to/client-cert.pem", "DATABASE_SSL_KEY": "/path/to/client-key.pem",
                        "DATABASE_SSL_ROOT_CERT": "/path/to/ca-cert.pem", "DB_POOL_SIZE": "50",
                        "DB_MAX_OVERFLOW": "20", "DB_POOL_TIMEOUT": "60", "DB_POOL_RECYCLE": "7200"},
}
LOCAL_DOTENV = {"LUMINAR_ENV": "local", "LUMINAR_DB_HOST": "localhost", "LUMINAR_DB_PORT": "5432",
                "LUMINAR_DB_NAME": "luminar_local", "LUMINAR_DB_USER": "luminar_dev",
                "LUMINAR_DB_PASSWORD": "dev_password"}


def from_dotenv(values: dict[str, str], shell: dict[str, str] | None = None) -> tuple[dict[str, str], DotenvRecord]:
    """The process environment after reading a .env holding ``values`` on top of ``shell``, and its record."""
    environ = {**values, **(shell or {})}
    supplied = {k: v for k, v in values.items() if k not in (shell or {})}
    return environ, DotenvRecord(path="/project/.env", values=supplied, env=values.get("LUMINAR_ENV"))


def refused(env: str | None, environ: dict[str, str], dotenv: DotenvRecord | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env, environ=environ, dotenv=dotenv)
    return str(caught.value)


# -- the incident: a .env copied from .env.local, and a command for testing ------------------------------------------
def test_env_testing_is_not_redirected_by_a_dotenv_written_for_local() -> None:
    environ, record = from_dotenv(LOCAL_DOTENV)
    message = refused("testing", environ, record)
    assert "LUMINAR_DB_PORT=5432" in message or "LUMINAR_DB_NAME=luminar_local" in message
    assert "from /project/.env" in message and "LUMINAR_ENV=local" in message
    assert "LUMINAR_TEST_DB_" in message and "nothing was done" in message


def test_luminar_env_testing_in_the_shell_does_not_adopt_a_local_dotenv_either() -> None:
    environ, record = from_dotenv(LOCAL_DOTENV, shell={"LUMINAR_ENV": "testing"})
    assert "written for LUMINAR_ENV=local" in refused(None, environ, record)


def test_the_dotenvs_own_environment_takes_its_values() -> None:
    environ, record = from_dotenv({**LOCAL_DOTENV, "LUMINAR_DB_NAME": "my_local"})
    s = load_settings(environ=environ, dotenv=record)
    assert (s.env, s.name, s.port) == ("local", "my_local", 5432)


def test_values_that_agree_with_the_other_environment_are_no_conflict() -> None:
    environ, record = from_dotenv({"LUMINAR_ENV": "local", "LUMINAR_DB_HOST": "localhost",
                                   "LUMINAR_DB_PASSWORD": "dev_password"})
    s = load_settings("testing", environ=environ, dotenv=record)
    assert (s.env, s.host, s.port, s.name) == ("testing", "localhost", 5433, "luminar_test")


def test_an_environments_own_variables_choose_its_target() -> None:
    environ, record = from_dotenv({**LOCAL_DOTENV, "LUMINAR_TEST_DB_PORT": "6543", "LUMINAR_TEST_DB_NAME": "t1"})
    s = load_settings("testing", environ=environ, dotenv=record)
    assert (s.port, s.name) == (6543, "t1")
    local = load_settings("local", environ=environ, dotenv=record)
    assert (local.port, local.name) == (5432, "luminar_local")


def test_a_shell_variable_belongs_to_the_shells_environment() -> None:
    assert load_settings(environ={"LUMINAR_ENV": "testing", "LUMINAR_DB_NAME": "other"}).name == "other"
    assert "LUMINAR_DB_NAME=other" in refused("local", {"LUMINAR_ENV": "testing", "LUMINAR_DB_NAME": "other"})


def test_a_database_url_written_for_another_environment_is_refused_without_its_secret() -> None:
    url = "postgresql://someone:S3cret-url@db.example:5432/elsewhere"
    message = refused("testing", {"LUMINAR_ENV": "local", "DATABASE_URL": url})
    assert "DATABASE_URL" in message and "S3cret-url" not in message


def test_replicas_written_for_another_environment_are_refused() -> None:
    message = refused("testing", {"LUMINAR_ENV": "local", "LUMINAR_DB_REPLICA_URLS": "postgresql://r1/db"})
    assert "LUMINAR_DB_REPLICA_URLS" in message


# -- two names for one setting ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("first", "second"), [
    ("MAX_OVERFLOW", "DB_MAX_OVERFLOW"), ("POOL_TIMEOUT", "DB_POOL_TIMEOUT"), ("POOL_RECYCLE", "DB_POOL_RECYCLE"),
    ("LUMINAR_DB_SSLMODE", "SSL_MODE"), ("LUMINAR_DB_NAME", "LUMINAR_LOCAL_DB_NAME"),
])
def test_two_names_of_one_setting_must_agree(first: str, second: str) -> None:
    values = {"LUMINAR_DB_SSLMODE": ("disable", "require"), "SSL_MODE": ("disable", "require"),
              "LUMINAR_DB_NAME": ("a", "b"), "LUMINAR_LOCAL_DB_NAME": ("a", "b")}
    one, other = values.get(first, ("7", "9"))
    message = refused(None, {first: one, second: other})
    assert first in message and second in message
    load_settings(environ={first: one, second: one})  # the same value twice is fine


def test_the_networks_pool_and_tls_names_are_read() -> None:
    s = load_settings(environ={"DB_MAX_OVERFLOW": "4", "DB_POOL_TIMEOUT": "20", "DB_POOL_RECYCLE": "900",
                               "SSL_MODE": "require", "DATABASE_SSL_ROOT_CERT": "/etc/ca.pem",
                               "DATABASE_SSL_CERT": "/etc/node.crt", "DATABASE_SSL_KEY": "/etc/node.key"})
    assert (s.max_overflow, s.pool_timeout, s.pool_recycle, s.sslmode) == (4, 20.0, 900.0, "require")
    assert (s.sslrootcert, s.sslcert, s.sslkey) == ("/etc/ca.pem", "/etc/node.crt", "/etc/node.key")


def test_the_read_host_becomes_a_replica_of_the_same_database() -> None:
    s = load_settings(environ={"LUMINAR_ENV": "production", "LUMINAR_DB_PASSWORD": "a-real-secret",
                               "LUMINAR_DB_READ_HOST": "replica-db.luminar.network"})
    (replica,) = s.replica_urls
    assert "host=replica-db.luminar.network" in replica and "dbname=luminar_production" in replica
    assert "sslmode=require" in replica and "a-real-secret" not in repr(s)


# -- the network's .env files ----------------------------------------------------------------------------------------
def reference(name: str) -> dict[str, str]:
    return dict(NETWORK_DOTENVS[name])


def test_the_networks_env_local_gives_the_local_database() -> None:
    s = load_settings(environ=reference(".env.local"))
    assert (s.env, s.host, s.port, s.name, s.user, s.sslmode) == (
        "local", "localhost", 5432, "luminar_local", "luminar_dev", "disable")
    assert (s.pool_size, s.max_overflow, s.pool_timeout, s.pool_recycle) == (10, 5, 20.0, 3600.0)


def test_the_networks_env_testnet_is_an_environment_with_its_defaults() -> None:
    s = load_settings(environ=reference(".env.testnet"))
    assert (s.env, s.name, s.user, s.password, s.sslmode) == (
        "testnet", "luminar_testnet", "luminar_test", "testnet_password", "disable")
    assert load_settings("testnet", environ={}).name == "luminar_testnet"
    assert "testnet" in ENVIRONMENTS and environment("testnet").runs_here


def test_the_networks_env_production_reads_its_replica_and_certificates() -> None:
    s = load_settings(environ=reference(".env.production"))
    assert (s.env, s.host, s.sslmode, s.sslcert) == ("production", "central-db.luminar.network", "require",
                                                      "/path/to/client-cert.pem")
    assert len(s.replica_urls) == 1 and (s.pool_size, s.max_overflow) == (50, 20)


# -- unknown names -----------------------------------------------------------------------------------------------------
def test_an_unknown_luminar_or_db_variable_is_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="luminar_store.config"):
        load_settings(environ={"LUMINAR_DB_NMAE": "typo", "DB_POOL_SIZ": "3", "OPENAI_MODEL": "x"})
    text = caplog.text
    assert "LUMINAR_DB_NMAE" in text and "did you mean LUMINAR_DB_NAME" in text
    assert "DB_POOL_SIZ" in text and "OPENAI_MODEL" not in text


def test_every_variable_of_the_networks_env_files_is_known_or_not_ours() -> None:
    for name in (".env.local", ".env.production", ".env.testnet"):
        ours = [k for k in reference(name) if k.startswith(("LUMINAR_", "DB_"))]
        assert ours and set(ours) <= KNOWN, (name, set(ours) - KNOWN)


def test_the_shipped_env_local_leaves_the_testing_target_alone() -> None:
    """`cp .env.local .env` then `make db-test-setup` (LUMINAR_ENV=testing in the shell): testing keeps its own."""
    from pathlib import Path

    shipped = {k: v or "" for k, v in dotenv_values(Path(__file__).resolve().parents[1] / ".env.local").items()}
    environ, record = from_dotenv(shipped, shell={"LUMINAR_ENV": "testing"})
    s = load_settings(environ=environ, dotenv=record)
    assert (s.env, s.port, s.name) == ("testing", 5433, "luminar_test")
    local = load_settings("local", environ=environ, dotenv=record)
    assert (local.port, local.name) == (5432, "luminar_local")


def test_a_shell_value_wins_over_the_dotenvs_other_name_for_it() -> None:
    """`make db-start LUMINAR_DB_PORT=5434` with `.env` copied from `.env.local` (LUMINAR_LOCAL_DB_PORT=5432)."""
    environ, record = from_dotenv({"LUMINAR_ENV": "local", "LUMINAR_LOCAL_DB_PORT": "5432"},
                                  shell={"LUMINAR_DB_PORT": "5434"})
    assert load_settings(environ=environ, dotenv=record).port == 5434
    both_in_file, record = from_dotenv({"LUMINAR_ENV": "local", "LUMINAR_LOCAL_DB_PORT": "5432",
                                        "LUMINAR_DB_PORT": "5434"})
    assert "LUMINAR_LOCAL_DB_PORT and LUMINAR_DB_PORT" in refused(None, both_in_file, record)
