"""Settings per environment: defaults of the specification, overrides, every refusal, and no password leaks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from luminar_store.config import DEV_PASSWORD, ENVIRONMENTS, load_dotenv_file, load_settings
from luminar_store.errors import ConfigError

SECRET = "Zq9-very-secret-Pw"
PROD = {"LUMINAR_ENV": "production", "LUMINAR_DB_PASSWORD": SECRET}


def refusal(environ: dict[str, str], env: str | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env, environ=environ)
    return str(caught.value)


# -- defaults of the specification ----------------------------------------------------------------------------------
def test_local_is_the_default_environment_with_the_spec_connection() -> None:
    s = load_settings(environ={})
    assert s.env == "local"
    assert (s.host, s.port, s.name, s.user, s.password) == (
        "localhost", 5432, "luminar_local", "luminar_dev", DEV_PASSWORD)
    assert s.sslmode == "disable"
    assert s.pool_size == 10
    assert s.safe_dsn() == "postgresql://luminar_dev:***@localhost:5432/luminar_local?sslmode=disable"


def test_production_defaults_are_the_spec_pool_and_central_database() -> None:
    s = load_settings(environ=PROD)
    assert (s.host, s.port, s.name, s.user) == ("central-db.luminar.network", 5432, "luminar_production",
                                                 "luminar_subnet")
    assert s.sslmode == "require"
    assert (s.pool_size, s.max_overflow, s.pool_timeout, s.pool_recycle) == (50, 20, 60.0, 7200.0)
    assert s.pool_max_size == 70


def test_testing_and_staging_defaults() -> None:
    testing = load_settings("testing", environ={})
    assert (testing.port, testing.name, testing.sslmode) == (5433, "luminar_test", "disable")
    staging = load_settings("staging", environ={})
    assert (staging.name, staging.sslmode, staging.password) == ("luminar_staging", "require", "")


def test_every_environment_loads_with_its_defaults() -> None:
    for env in ENVIRONMENTS:
        environ = {"LUMINAR_DB_PASSWORD": SECRET} if env == "production" else {}
        assert load_settings(env, environ=environ).env == env


def test_env_argument_wins_over_luminar_env_and_is_case_insensitive() -> None:
    assert load_settings("testing", environ={"LUMINAR_ENV": "local"}).env == "testing"
    assert load_settings(environ={"LUMINAR_ENV": " Local "}).env == "local"


def test_given_environ_is_read_instead_of_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMINAR_DB_HOST", "from-process-env")
    assert load_settings(environ={}).host == "localhost"
    assert load_settings().host == "from-process-env"


# -- refusals -------------------------------------------------------------------------------------------------------
def test_unknown_environment_is_refused_naming_the_variable() -> None:
    message = refusal({"LUMINAR_ENV": "prod"})
    assert "LUMINAR_ENV" in message and "production" in message and "'prod'" in message


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_production_refuses_sslmode_weaker_than_require(mode: str) -> None:
    message = refusal({**PROD, "LUMINAR_DB_SSLMODE": mode})
    assert "LUMINAR_DB_SSLMODE" in message and mode in message and "require" in message


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_production_accepts_strong_sslmodes(mode: str) -> None:
    assert load_settings(environ={**PROD, "LUMINAR_DB_SSLMODE": mode}).sslmode == mode


def test_production_refuses_weak_sslmode_given_by_database_url() -> None:
    url = f"postgresql://luminar_subnet:{SECRET}@central-db.luminar.network:5432/luminar_production?sslmode=prefer"
    message = refusal({"LUMINAR_ENV": "production", "DATABASE_URL": url})
    assert "DATABASE_URL" in message and "require" in message
    assert SECRET not in message


def test_production_refuses_a_missing_password() -> None:
    message = refusal({"LUMINAR_ENV": "production"})
    assert "LUMINAR_DB_PASSWORD" in message
    message = refusal({"LUMINAR_ENV": "production", "LUMINAR_DB_PASSWORD": ""})
    assert "LUMINAR_DB_PASSWORD" in message


def test_production_refuses_the_development_password() -> None:
    message = refusal({"LUMINAR_ENV": "production", "LUMINAR_DB_PASSWORD": DEV_PASSWORD})
    assert "development password" in message and "LUMINAR_DB_PASSWORD" in message
    assert DEV_PASSWORD not in message


def test_unknown_sslmode_is_refused() -> None:
    assert "LUMINAR_DB_SSLMODE" in refusal({"LUMINAR_DB_SSLMODE": "always"})


@pytest.mark.parametrize("raw", ["abc", "54.32", "5432x"])
def test_non_integer_port_is_refused_naming_the_variable(raw: str) -> None:
    message = refusal({"LUMINAR_DB_PORT": raw})
    assert "LUMINAR_DB_PORT" in message and "whole number" in message and repr(raw) in message


@pytest.mark.parametrize("raw", ["0", "65536", "-1"])
def test_port_out_of_range_is_refused(raw: str) -> None:
    assert "LUMINAR_DB_PORT" in refusal({"LUMINAR_DB_PORT": raw})


@pytest.mark.parametrize("name", ["POOL_SIZE", "DB_POOL_SIZE", "MAX_OVERFLOW", "LUMINAR_RETENTION_DAYS"])
def test_non_integer_pool_and_retention_numbers_are_refused(name: str) -> None:
    message = refusal({name: "ten"})
    assert name in message and "whole number" in message


def test_pool_size_below_one_and_negative_overflow_are_refused() -> None:
    assert "POOL_SIZE" in refusal({"POOL_SIZE": "0"})
    assert "MAX_OVERFLOW" in refusal({"MAX_OVERFLOW": "-1"})
    assert load_settings(environ={"MAX_OVERFLOW": "0"}).max_overflow == 0


@pytest.mark.parametrize("raw", ["soon", "0", "-5", "nan", "inf"])
def test_bad_pool_timeouts_are_refused(raw: str) -> None:
    assert "POOL_TIMEOUT" in refusal({"POOL_TIMEOUT": raw})
    assert "POOL_RECYCLE" in refusal({"POOL_RECYCLE": raw})


def test_malformed_database_url_is_refused_without_echoing_it() -> None:
    message = refusal({"DATABASE_URL": f"postgresql://u:{SECRET}@host:notaport/db"})
    assert "DATABASE_URL" in message
    assert SECRET not in message


@pytest.mark.parametrize("password", ["alpha7@bravo8", "alpha7@bravo8@charl9", "alpha7/bravo8", "alpha7:bravo8/charl9",
                                      "alpha7?bravo8@charl9"])
def test_a_password_with_reserved_characters_is_never_printed(password: str) -> None:
    message = refusal({"DATABASE_URL": f"postgresql://luminar:{password}@db.internal:5432/luminar"})
    assert "DATABASE_URL" in message and "percent-encode" in message and "%40" in message
    for piece in ("alpha7", "bravo8", "charl9"):
        assert piece not in message


def test_a_percent_encoded_password_is_read_whole() -> None:
    s = load_settings(environ={"DATABASE_URL": "postgresql://luminar:p%40ss%2Fw%3Ard@db.internal:5432/luminar"})
    assert (s.password, s.host, s.port, s.name) == ("p@ss/w:rd", "db.internal", 5432, "luminar")
    assert "p@ss" not in repr(s) and "p@ss" not in s.safe_dsn()


# -- overrides ------------------------------------------------------------------------------------------------------
def test_luminar_db_variables_override_the_defaults() -> None:
    s = load_settings(environ={"LUMINAR_DB_HOST": "db.internal", "LUMINAR_DB_PORT": "6543",
                               "LUMINAR_DB_NAME": "other", "LUMINAR_DB_USER": "someone",
                               "LUMINAR_DB_PASSWORD": SECRET, "LUMINAR_DB_SSLMODE": "REQUIRE"})
    assert (s.host, s.port, s.name, s.user, s.password, s.sslmode) == (
        "db.internal", 6543, "other", "someone", SECRET, "require")
    assert not s.from_database_url


def test_database_url_overrides_the_luminar_db_variables() -> None:
    s = load_settings(environ={
        "LUMINAR_DB_HOST": "ignored-host", "LUMINAR_DB_PORT": "1111", "LUMINAR_DB_NAME": "ignored_db",
        "LUMINAR_DB_USER": "ignored_user", "LUMINAR_DB_PASSWORD": "ignored_pw", "LUMINAR_DB_SSLMODE": "disable",
        "DATABASE_URL": f"postgresql://url_user:{SECRET}@url-host:6000/url_db?sslmode=require",
    })
    assert (s.host, s.port, s.name, s.user, s.password, s.sslmode) == (
        "url-host", 6000, "url_db", "url_user", SECRET, "require")
    assert s.from_database_url


def test_database_url_satisfies_production_checks() -> None:
    url = f"postgresql://luminar_subnet:{SECRET}@central-db.luminar.network/luminar_production?sslmode=verify-full"
    s = load_settings(environ={"LUMINAR_ENV": "production", "DATABASE_URL": url})
    assert (s.port, s.sslmode, s.password) == (5432, "verify-full", SECRET)


def test_db_pool_size_overrides_pool_size() -> None:
    assert load_settings(environ={"POOL_SIZE": "30"}).pool_size == 30
    assert load_settings(environ={"POOL_SIZE": "30", "DB_POOL_SIZE": "8"}).pool_size == 8
    assert load_settings(environ={**PROD, "DB_POOL_SIZE": "10"}).pool_size == 10
    assert load_settings(environ={**PROD, "DB_POOL_SIZE": "10"}).pool_max_size == 30


def test_pool_timing_and_replicas_are_read() -> None:
    s = load_settings(environ={"MAX_OVERFLOW": "7", "POOL_TIMEOUT": "12.5", "POOL_RECYCLE": "900",
                               "LUMINAR_DB_REPLICA_URLS": " postgresql://r1/db , ,postgresql://r2/db"})
    assert (s.max_overflow, s.pool_timeout, s.pool_recycle) == (7, 12.5, 900.0)
    assert s.replica_urls == ("postgresql://r1/db", "postgresql://r2/db")


def test_with_database_changes_only_the_name() -> None:
    s = load_settings(environ={"LUMINAR_DB_PASSWORD": SECRET})
    other = s.with_database("elsewhere")
    assert other.name == "elsewhere"
    assert (other.host, other.port, other.user, other.password) == (s.host, s.port, s.user, s.password)


# -- secrets ----------------------------------------------------------------------------------------------------------
def test_password_never_appears_in_repr_safe_dsn_describe_or_public_dict() -> None:
    replica = f"postgresql://reader:{SECRET}@replica-1/luminar_production"
    s = load_settings(environ={**PROD, "LUMINAR_DB_REPLICA_URLS": replica})
    for text in (repr(s), str(s), s.safe_dsn(), s.safe_dsn(dbname="postgres"), s.describe(),
                 repr(s.public_dict())):
        assert SECRET not in text
    assert ":***@" in s.safe_dsn()
    assert s.public_dict()["password"] == "***"
    assert s.public_dict()["replica_urls"] == 1


def test_safe_dsn_of_a_passwordless_setting_has_no_placeholder() -> None:
    s = load_settings(environ={"LUMINAR_DB_PASSWORD": ""})
    assert s.safe_dsn() == "postgresql://luminar_dev@localhost:5432/luminar_local?sslmode=disable"
    assert "password" not in s.connect_kwargs()


def test_conninfo_and_connect_kwargs_carry_the_password_for_connecting() -> None:
    s = load_settings(environ={**PROD, "LUMINAR_DB_SSLROOTCERT": "/etc/ssl/luminar-ca.pem"})
    kwargs = s.connect_kwargs(dbname="postgres")
    assert kwargs["password"] == SECRET and kwargs["dbname"] == "postgres"
    # A root certificate without an sslmode: production authenticates the server (verify-full).
    assert kwargs["sslmode"] == "verify-full" and kwargs["sslrootcert"] == "/etc/ssl/luminar-ca.pem"
    assert SECRET in s.conninfo() and "sslmode=verify-full" in s.conninfo()


# -- .env files -------------------------------------------------------------------------------------------------------
@pytest.fixture
def restored_environ():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_dotenv_fills_missing_variables_but_never_overrides_set_ones(tmp_path, monkeypatch, restored_environ):
    (tmp_path / ".env").write_text("LUMINAR_DB_HOST=from-dotenv\nLUMINAR_DB_PORT=6001\n"
                                   "LUMINAR_DB_NAME=dotenv_db\nLUMINAR_DB_USER=dotenv_user\n")
    work = tmp_path / "nested" / "deeper"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # found from a subdirectory too: the search walks upwards
    for name in ("LUMINAR_DB_PORT", "LUMINAR_DB_USER"):
        os.environ.pop(name, None)
    os.environ["LUMINAR_DB_HOST"] = "already-set"
    os.environ["LUMINAR_DB_NAME"] = ""  # set, even if empty: still not overridden

    assert load_dotenv_file() == str(tmp_path / ".env")
    assert os.environ["LUMINAR_DB_HOST"] == "already-set"
    assert os.environ["LUMINAR_DB_NAME"] == ""
    assert os.environ["LUMINAR_DB_PORT"] == "6001"
    assert os.environ["LUMINAR_DB_USER"] == "dotenv_user"
    s = load_settings("local")
    assert (s.host, s.port, s.user) == ("already-set", 6001, "dotenv_user")


# -- the shipped .env templates ---------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def template(name: str) -> dict[str, str]:
    from dotenv import dotenv_values

    return {k: v or "" for k, v in dotenv_values(ROOT / name).items()}


def test_env_local_gives_the_local_defaults() -> None:
    assert load_settings(environ=template(".env.local")) == load_settings("local", environ={})


def test_env_example_documents_every_variable_and_loads_as_local() -> None:
    values = template(".env.example")
    assert load_settings(environ=values) == load_settings("local", environ={})
    text = (ROOT / ".env.example").read_text()
    for name in ("LUMINAR_ENV", "DATABASE_URL", "POOL_SIZE", "DB_POOL_SIZE", "MAX_OVERFLOW", "POOL_TIMEOUT",
                 "POOL_RECYCLE", "LUMINAR_DB_SSLMODE", "LUMINAR_DB_REPLICA_URLS", "LUMINAR_RETENTION_DAYS"):
        assert name in values, f"{name} is not in .env.example"
    assert text.count("central-db.luminar.network") >= 1 and "7200" in text and "50" in text


def test_env_production_is_a_template_without_secrets() -> None:
    values = template(".env.production")
    assert values["LUMINAR_DB_PASSWORD"] == "" and values["LUMINAR_DB_SSLMODE"] == "require"
    assert "LUMINAR_DB_PASSWORD" in refusal(values)  # refused until the password is filled in
    s = load_settings(environ={**values, "LUMINAR_DB_PASSWORD": SECRET})
    assert s == load_settings("production", environ={"LUMINAR_DB_PASSWORD": SECRET})
