"""TLS end to end: certificates from a test CA, a real server prepared by ``prepare_server``, and who it lets in.

The module's server (started once) listens on 127.0.0.1 and 127.0.0.2 with only 127.0.0.1/32 in the allow-list. On
Linux every connection to 127/8 leaves from 127.0.0.1, so "a client at 127.0.0.2" is staged with a relay whose own
connection leaves from 127.0.0.2 (``tests/_relay.py``); a relay listening on 127.0.0.3, a name the server's
certificate does not list, stands for "a server whose certificate names another host".
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from _relay import Relay
from psycopg import sql

from luminar_store.cli.main import cli
from luminar_store.config import Settings, load_settings
from luminar_store.config.tls import check_tls_minimum
from luminar_store.database import Database
from luminar_store.errors import ConfigError, DatabaseUnavailableError, OperationError, ValidationError
from luminar_store.ops import cluster
from luminar_store.ops.certs import CertPair, certificate_cn, issue_node_cert, issue_server_cert, make_ca
from luminar_store.ops.connect import connect
from luminar_store.ops.provision import scram_verifier
from luminar_store.ops.server_tls import (
    ServerPlan,
    apply_plan,
    parse_cidrs,
    pgaudit_library,
    plan_server,
    prepare_server,
)

ADMIN, ADMIN_PW = "luminar_admin", "Adm1n-secret-pw"
NODE_PW = {"miner_7": "M7-secret-pw", "miner_9": "M9-secret-pw"}
SECRETS = (ADMIN_PW, *NODE_PW.values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class TlsServer:
    """The module's server: where it listens, its data directory and the test CA's files."""

    port: int
    data_dir: Path
    ca: CertPair
    nodes: dict[str, CertPair]
    foreign: CertPair  # a certificate for miner_7 signed by another CA
    foreign_ca: CertPair

    def settings(self, user: str = "miner_7", *, host: str = "127.0.0.1", port: int | None = None,
                 cert: CertPair | None | str = "own", sslmode: str = "verify-full",
                 rootcert: Path | None = None) -> Settings:
        """Settings of ``user`` (its own certificate unless ``cert`` says otherwise), env testing."""
        pair = self.nodes.get(user) if cert == "own" else cert
        environ = {"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": host, "LUMINAR_DB_PORT": str(port or self.port),
                   "LUMINAR_DB_NAME": "postgres",
                   "LUMINAR_DB_USER": user, "LUMINAR_DB_PASSWORD": ADMIN_PW if user == ADMIN else NODE_PW[user],
                   "LUMINAR_DB_SSLMODE": sslmode, "LUMINAR_DB_SSLROOTCERT": str(rootcert or self.ca.cert)}
        if isinstance(pair, CertPair):
            environ.update(LUMINAR_DB_SSLCERT=str(pair.cert), LUMINAR_DB_SSLKEY=str(pair.key))
        return load_settings("testing", environ=environ)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    tls = tmp_path_factory.mktemp("tls")
    ca = make_ca(tls / "ca")
    server = issue_server_cert(tls / "server", ca, ["localhost", "127.0.0.1", "127.0.0.2"])
    nodes = {login: issue_node_cert(tls / "nodes", ca, login) for login in (*NODE_PW, ADMIN)}
    foreign_ca = make_ca(tls / "foreign-ca", name="Another CA")
    foreign = issue_node_cert(tls / "foreign", foreign_ca, "miner_7")
    port = _free_port()
    local = cluster.Cluster(handle=tmp_path_factory.mktemp("pg") / "cluster", port=port, host="127.0.0.1",
                            user=ADMIN, password=ADMIN_PW, dbname="postgres")
    cluster.init(local)
    report = prepare_server(local.data_dir, cert=server.cert, key=server.key, ca=ca.cert,
                            allowed_cidrs="127.0.0.1/32", admin_role=ADMIN)
    assert report.reload == "the server is not running: it takes the files at its next start"
    # Listen on both addresses (conf.d is read after the cluster's own listen settings).
    listen = local.data_dir / "conf.d" / "zz_test_listen.conf"
    listen.write_text("listen_addresses = '127.0.0.1,127.0.0.2'\n")
    owner = local.data_dir.stat()
    os.chown(listen, owner.st_uid, owner.st_gid)
    cluster.start(local)
    try:
        found = TlsServer(port=port, data_dir=local.data_dir, ca=ca, nodes=nodes, foreign=foreign,
                          foreign_ca=foreign_ca)
        with connect(found.settings(ADMIN)) as admin:
            for role, password in NODE_PW.items():
                admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(scram_verifier(password))))
        yield found
    finally:
        cluster.stop(local)
        shutil.rmtree(local.home, ignore_errors=True)  # a home under /var/tmp outlives pytest's directory


def refusal(settings: Settings) -> str:
    """The one-line message of a refused connection (checked: one line, no password)."""
    with pytest.raises(DatabaseUnavailableError) as caught:
        connect(settings).close()
    message = str(caught.value)
    assert "\n" not in message
    assert not any(secret in message for secret in SECRETS), message
    return message


def whoami(settings: Settings) -> tuple[str, bool, str]:
    with connect(settings) as conn:
        return conn.execute("SELECT current_user, ssl, client_dn FROM pg_stat_ssl "
                            "WHERE pid = pg_backend_pid()").fetchone()


# -- the server: who gets in ----------------------------------------------------------------------------------------
def test_a_node_with_its_certificate_connects_with_verify_full(tls_server: TlsServer) -> None:
    settings = tls_server.settings("miner_7")
    assert settings.sslmode == "verify-full"
    assert whoami(settings) == ("miner_7", True, "/CN=miner_7")


def test_without_a_client_certificate_the_server_refuses_naming_the_settings(tls_server: TlsServer) -> None:
    message = refusal(tls_server.settings("miner_7", cert=None))
    assert message.startswith("the server requires a client certificate: set LUMINAR_DB_SSLCERT and "
                              "LUMINAR_DB_SSLKEY"), message


def test_the_certificate_of_another_node_is_refused_naming_both_names(tls_server: TlsServer) -> None:
    message = refusal(tls_server.settings("miner_7", cert=tls_server.nodes["miner_9"]))
    assert message.startswith("certificate authentication failed for user miner_7: the certificate's CN is "
                              "miner_9"), message


def test_a_certificate_from_another_ca_is_refused(tls_server: TlsServer) -> None:
    message = refusal(tls_server.settings("miner_7", cert=tls_server.foreign))
    assert message.startswith("the server does not trust the client certificate"), message
    assert "not issued by the server's CA" in message


def test_an_address_outside_the_allow_list_is_refused_naming_it(tls_server: TlsServer) -> None:
    with Relay("127.0.0.1", ("127.0.0.2", tls_server.port), source="127.0.0.2") as relay:
        message = refusal(tls_server.settings("miner_7", port=relay.port))
    assert message.startswith("the server refused 127.0.0.2: no pg_hba.conf entry allows this address (the "
                              "allow-list, LUMINAR_ALLOWED_CIDRS"), message


def test_the_server_listens_on_the_refused_address_too(tls_server: TlsServer) -> None:
    # 127.0.0.2 is refused for who connects from it, not for lack of a listener: dialled from 127.0.0.1, it answers.
    assert whoami(tls_server.settings("miner_7", host="127.0.0.2"))[0] == "miner_7"


def test_require_accepts_a_certificate_of_another_host_and_verify_full_refuses_it(tls_server: TlsServer) -> None:
    # The server's certificate names localhost, 127.0.0.1 and 127.0.0.2; dialled as 127.0.0.3 it names another host.
    with Relay("127.0.0.3", ("127.0.0.1", tls_server.port)) as relay:
        assert whoami(tls_server.settings("miner_7", host="127.0.0.3", port=relay.port,
                                          sslmode="require"))[:2] == ("miner_7", True)
        message = refusal(tls_server.settings("miner_7", host="127.0.0.3", port=relay.port))
    assert message.startswith("the server's certificate names localhost (and 2 other names), not 127.0.0.3, the "
                              "host dialled (sslmode=verify-full checks the name)"), message


def test_clear_text_is_refused_even_from_the_allow_list(tls_server: TlsServer) -> None:
    message = refusal(tls_server.settings("miner_7", sslmode="disable"))
    assert message.startswith("the server accepts only TLS connections and this one was in clear text "
                              "(sslmode=disable): set LUMINAR_DB_SSLMODE=verify-full"), message


def test_a_server_certificate_from_another_ca_is_refused_under_verify_full(tls_server: TlsServer) -> None:
    message = refusal(tls_server.settings("miner_7", rootcert=tls_server.foreign_ca.cert))
    assert message.startswith("the server's certificate was not issued by the CA of LUMINAR_DB_SSLROOTCERT="), message


def test_verify_full_without_the_root_certificate_file_names_the_setting(tls_server: TlsServer) -> None:
    missing = tls_server.data_dir.parent / "no-such-ca.crt"
    message = refusal(tls_server.settings("miner_7", rootcert=missing))
    assert message.startswith(f"sslmode=verify-full needs the CA's certificate and {missing} does not exist: set "
                              "LUMINAR_DB_SSLROOTCERT"), message


def test_pgaudit_runs_exactly_when_prepare_server_found_its_library(tls_server: TlsServer) -> None:
    library, _ = pgaudit_library(tls_server.data_dir)
    with connect(tls_server.settings(ADMIN)) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        assert ("pgaudit" in preload) is (library is not None)
        if library is not None:  # the package is optional; the other case is the line that says it was skipped
            assert conn.execute("SHOW pgaudit.log").fetchone() == ("ddl, role",)
    conf = (tls_server.data_dir / "conf.d" / "luminar_security.conf").read_text()
    assert ("pgaudit.log = 'ddl, role'" in conf) is (library is not None)
    assert ("# pgAudit skipped" in conf) is (library is None)


def test_a_file_the_server_finds_wrong_is_put_back_before_any_reload(tls_server: TlsServer, tmp_path: Path) -> None:
    from luminar_store.ops.server_tls import default_template

    bad = tmp_path / "bad.template"
    bad.write_text(default_template().read_text() + "hostssl all all 127.0.0.1/32 no-such-method\n")
    conf = tls_server.data_dir / "conf.d" / "luminar_security.conf"
    before = (tls_server.data_dir / "pg_hba.conf").read_text(), conf.read_text()
    with pytest.raises(OperationError) as caught:
        prepare_server(tls_server.data_dir, cert=tls_server.data_dir / "luminar_tls" / "server.crt",
                       key=tls_server.data_dir / "luminar_tls" / "server.key", ca=tls_server.ca.cert,
                       allowed_cidrs="127.0.0.1/32", admin_role=ADMIN, template=bad,
                       admin_conninfo=tls_server.settings(ADMIN).conninfo())
    assert "the server finds the new settings wrong, so pg_hba.conf and luminar_security.conf were put back" in \
        str(caught.value)
    assert "pg_hba.conf line " in str(caught.value) and "no-such-method" in str(caught.value)
    assert ((tls_server.data_dir / "pg_hba.conf").read_text(), conf.read_text()) == before
    assert whoami(tls_server.settings("miner_7"))[0] == "miner_7"


def test_a_client_key_others_can_read_is_refused_naming_the_setting(tls_server: TlsServer, tmp_path: Path) -> None:
    own = tls_server.nodes["miner_7"]
    loose = tmp_path / "miner_7.key"
    loose.write_bytes(own.key.read_bytes())
    loose.chmod(0o644)
    message = refusal(tls_server.settings("miner_7", cert=CertPair(own.cert, loose)))
    assert message.startswith(f'LUMINAR_DB_SSLKEY: private key file "{loose}" has group or world access'), message


def test_a_client_certificate_file_that_does_not_exist_is_named(tls_server: TlsServer, tmp_path: Path) -> None:
    own = tls_server.nodes["miner_7"]
    message = refusal(tls_server.settings("miner_7", cert=CertPair(tmp_path / "gone.crt", own.key)))
    assert message.startswith(f"the server requires a client certificate, and LUMINAR_DB_SSLCERT={tmp_path}"), message


def test_the_nodes_database_reports_the_same_cause(tls_server: TlsServer) -> None:
    async def current_user(settings: Settings) -> str:
        async with Database(settings) as database, database.connection() as conn:
            return (await (await conn.execute("SELECT current_user")).fetchone())[0]

    assert asyncio.run(current_user(tls_server.settings("miner_9"))) == "miner_9"
    with pytest.raises(DatabaseUnavailableError) as caught:
        asyncio.run(current_user(tls_server.settings("miner_9", cert=None)))
    assert str(caught.value).startswith("the server requires a client certificate"), str(caught.value)


def test_prepare_server_with_an_admin_url_has_the_server_check_the_files_then_reloads(tls_server: TlsServer) -> None:
    admin = tls_server.settings(ADMIN)
    report = prepare_server(tls_server.data_dir, cert=tls_server.data_dir / "luminar_tls" / "server.crt",
                            key=tls_server.data_dir / "luminar_tls" / "server.key", ca=tls_server.ca.cert,
                            allowed_cidrs="127.0.0.1", admin_role=ADMIN, admin_conninfo=admin.conninfo())
    assert report.reload == "checked by the server and reloaded"
    assert report.backup.is_file() and report.backup.parent == tls_server.data_dir
    with connect(admin) as conn:
        assert conn.execute("SHOW ssl").fetchone() == ("on",)
        assert conn.execute("SHOW ssl_min_protocol_version").fetchone() == ("TLSv1.2",)
        rules = conn.execute("SELECT type, address, auth_method, options FROM pg_hba_file_rules "
                             "WHERE type = 'hostssl'").fetchall()
    assert rules == [("hostssl", "127.0.0.1", "scram-sha-256", ["clientcert=verify-full"])]
    assert whoami(tls_server.settings("miner_7"))[0] == "miner_7"


def eventually(check, *, timeout: float = 10.0, every: float = 0.05) -> None:
    """Poll ``check()`` until it is true; a reload reaches new sessions a moment after pg_reload_conf() returns."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{check.__name__} never became true")
        time.sleep(every)


def test_cli_prepare_server_with_the_cert_method_lets_a_node_in_by_its_certificate_alone(
        tls_server: TlsServer, cli_run) -> None:
    tls = tls_server.data_dir / "luminar_tls"
    admin_url = tls_server.settings(ADMIN).conninfo()
    wrong_password = replace(tls_server.settings("miner_7"), password="not-the-password")

    def password_ignored() -> bool:
        try:
            return whoami(wrong_password)[0] == "miner_7"
        except DatabaseUnavailableError:
            return False

    def password_asked() -> bool:
        return not password_ignored()

    def prepare(method: str):
        return cli_run(["tls", "prepare-server", "--data-dir", str(tls_server.data_dir), "--cert",
                        str(tls / "server.crt"), "--key", str(tls / "server.key"), "--ca", str(tls_server.ca.cert),
                        "--method", method, "--admin-role", ADMIN, "--admin-url", admin_url, "--yes"],
                       env={"LUMINAR_ALLOWED_CIDRS": "127.0.0.1/32"})

    result = prepare("cert")
    try:
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == "will change:" and f"  {tls_server.data_dir / 'pg_hba.conf'}" in lines
        assert "checked by the server and reloaded" in result.output
        assert ADMIN_PW not in result.output
        eventually(password_ignored)
    finally:
        assert prepare("scram-sha-256").exit_code == 0
    eventually(password_asked)
    assert "password authentication failed for user" in refusal(wrong_password)


def test_the_server_key_is_the_servers_own_and_private(tls_server: TlsServer) -> None:
    key = tls_server.data_dir / "luminar_tls" / "server.key"
    info = key.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == tls_server.data_dir.stat().st_uid


# -- files written, without a server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertPair, CertPair]:
    """A CA and a server certificate issued by it, for the tests that need no server."""
    where = tmp_path_factory.mktemp("ca")
    ca = make_ca(where)
    return ca, issue_server_cert(where, ca, ["db.example", "10.0.0.5"])


@pytest.fixture
def fake_data_dir(tmp_path: Path, test_ca: tuple[CertPair, CertPair]) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "PG_VERSION").write_text("15\n")
    (data / "postgresql.conf").write_text("shared_preload_libraries = 'pg_stat_statements'\n")
    (data / "pg_hba.conf").write_text("host all all 0.0.0.0/0 trust\n")
    ca, server = test_ca
    for name, source in (("server.crt", server.cert), ("server.key", server.key), ("ca.crt", ca.cert)):
        shutil.copy(source, tmp_path / name)
    return data


def test_plan_refuses_a_key_of_another_certificate(fake_data_dir: Path, tmp_path: Path) -> None:
    other = issue_node_cert(tmp_path / "other", make_ca(tmp_path / "other-ca"), "miner_7")
    with pytest.raises(ConfigError) as caught:
        plan_for(fake_data_dir, key=other.key)
    assert str(caught.value) == f"{other.key} is not the key of {fake_data_dir.parent / 'server.crt'}; give the key " \
                                "issued with that certificate"


def plan_for(data: Path, **options: object) -> ServerPlan:
    files = {"cert": data.parent / "server.crt", "key": data.parent / "server.key", "ca": data.parent / "ca.crt"}
    return plan_server(data, **{**files, "allowed_cidrs": "10.0.0.0/24, 192.168.5.7", **options})  # type: ignore


def hba_lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_hba_file_allows_only_tls_with_a_certificate_from_the_allow_list(fake_data_dir: Path) -> None:
    lines = hba_lines(plan_for(fake_data_dir, admin_role="postgres").hba_text())
    assert lines == [
        ["local", "all", "postgres", "peer"],
        ["local", "all", "all", "reject"],
        ["hostnossl", "all", "all", "all", "reject"],
        ["hostssl", "all", "all", "10.0.0.0/24", "scram-sha-256", "clientcert=verify-full"],
        ["hostssl", "all", "all", "192.168.5.7/32", "scram-sha-256", "clientcert=verify-full"],
        ["host", "all", "all", "0.0.0.0/0", "reject"],
        ["host", "all", "all", "::/0", "reject"],
    ]
    cert_only = hba_lines(plan_for(fake_data_dir, method="cert").hba_text())
    assert ["hostssl", "all", "all", "10.0.0.0/24", "cert"] in cert_only


def test_pgaudit_is_configured_when_its_library_is_there_and_skipped_saying_so_otherwise(fake_data_dir: Path) -> None:
    plan = plan_for(fake_data_dir)
    with_audit = replace(plan, pgaudit=Path("/usr/lib/postgresql/15/lib/pgaudit.so")).security_conf_text(
        "pg_stat_statements")
    assert "shared_preload_libraries = 'pg_stat_statements, pgaudit'" in with_audit
    assert "pgaudit.log = 'ddl, role'" in with_audit
    without = replace(plan, pgaudit=None, libdir="/usr/lib/postgresql/15/lib").security_conf_text()
    settings = [line.split("=")[0].strip() for line in without.splitlines() if not line.startswith("#")]
    assert "shared_preload_libraries" not in settings and "pgaudit.log" not in settings
    assert "# pgAudit skipped: no pgaudit.so in /usr/lib/postgresql/15/lib" in without
    for conf in (with_audit, without):
        assert "ssl = on" in conf and "ssl_min_protocol_version = 'TLSv1.2'" in conf
        assert "password_encryption = 'scram-sha-256'" in conf


def test_apply_keeps_the_old_hba_file_and_includes_conf_d_once(fake_data_dir: Path) -> None:
    plan = plan_for(fake_data_dir)
    first = apply_plan(plan, reload=False)
    second = apply_plan(plan, reload=False)
    assert first.backup.read_text() == "host all all 0.0.0.0/0 trust\n"
    assert first.backup != second.backup
    assert (fake_data_dir / "postgresql.conf").read_text().count("include_dir = 'conf.d'") == 1
    assert stat.S_IMODE((fake_data_dir / "luminar_tls" / "server.key").stat().st_mode) == 0o600
    assert "hostnossl" in (fake_data_dir / "pg_hba.conf").read_text()
    assert first.reload.startswith("not reloaded")


@pytest.mark.parametrize(("value", "expected"), [
    ("10.0.0.5/24", "LUMINAR_ALLOWED_CIDRS holds '10.0.0.5/24', whose address has bits beyond the /24 prefix; "
                    "did you mean 10.0.0.0/24?"),
    ("10.0.0.0/24,db.example", "LUMINAR_ALLOWED_CIDRS holds 'db.example', which is not an address or network"),
    (" , ", "LUMINAR_ALLOWED_CIDRS is empty"),
])
def test_a_bad_allow_list_is_refused_naming_the_variable_and_value(value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_cidrs(value)
    assert str(caught.value).startswith(expected), str(caught.value)


def test_the_allow_list_is_normalised() -> None:
    assert parse_cidrs("127.0.0.1 10.0.0.0/8,::1, 10.0.0.0/8") == ("127.0.0.1/32", "10.0.0.0/8", "::1/128")


def test_a_configuration_directory_apart_from_the_data_directory_gets_the_files(fake_data_dir: Path,
                                                                                tmp_path: Path) -> None:
    etc = tmp_path / "etc"  # Debian's layout: /etc/postgresql/<major>/main beside /var/lib/postgresql/<major>/main
    etc.mkdir()
    (fake_data_dir / "postgresql.conf").rename(etc / "postgresql.conf")
    (etc / "postgresql.conf").write_text("include_dir = 'conf.d'\n")
    plan = plan_for(fake_data_dir, config_dir=etc)
    assert plan.changes[-3:] == [etc / "postgresql.conf", etc / "conf.d" / "luminar_security.conf",
                                 etc / "pg_hba.conf"]
    apply_plan(plan, reload=False)
    assert (etc / "postgresql.conf").read_text() == "include_dir = 'conf.d'\n"  # already there: not added twice
    assert f"ssl_key_file = '{etc / 'luminar_tls' / 'server.key'}'" in plan.security_conf.read_text()
    assert "hostnossl" in (etc / "pg_hba.conf").read_text()
    with pytest.raises(ConfigError, match="holds no postgresql.conf; give the directory of the server's configuration"):
        plan_for(fake_data_dir)


def test_plan_refuses_a_template_with_an_unknown_placeholder(fake_data_dir: Path, tmp_path: Path) -> None:
    odd = tmp_path / "odd.template"
    odd.write_text("$allowed\nhost all $someone 0.0.0.0/0 reject\n")
    with pytest.raises(ConfigError, match=r"has a placeholder it cannot fill \('someone'\)"):
        plan_for(fake_data_dir, template=odd)


def test_plan_refuses_what_is_not_a_data_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a PostgreSQL data directory"):
        plan_server(tmp_path, cert=tmp_path / "a", key=tmp_path / "b", ca=tmp_path / "c", allowed_cidrs="10.0.0.0/8")


# -- certificates ---------------------------------------------------------------------------------------------------
def test_node_certificates_name_the_login_and_keys_are_private(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    node = issue_node_cert(tmp_path, ca, "validator_3")
    assert certificate_cn(node.cert) == "validator_3"
    for key in (ca.key, node.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(ValidationError, match="login"):
        issue_node_cert(tmp_path, ca, "Robert'); DROP")


def test_cli_issues_certificates_and_never_prints_a_key(cli_run, tmp_path: Path) -> None:
    out = tmp_path / "tls"
    made = [cli_run(["tls", "ca", "--dir", str(out)]),
            cli_run(["tls", "server-cert", "--dir", str(out), "--name", "db.example", "--name", "10.0.0.5"]),
            cli_run(["tls", "node-cert", "miner_7", "--dir", str(out)])]
    for result in made:
        assert result.exit_code == 0, result.output
        assert "PRIVATE KEY" not in result.output
    again = cli_run(["tls", "node-cert", "miner_7", "--dir", str(out)])
    assert again.exit_code == 1
    assert again.output.strip().splitlines()[-1].endswith("miner_7.key already exists; keep it, or remove it (and "
                                                          "its certificate) to issue anew")


def test_cli_prepare_server_refuses_a_bad_network_in_one_line(cli_run, fake_data_dir: Path) -> None:
    d = fake_data_dir.parent
    args = ["tls", "prepare-server", "--data-dir", str(fake_data_dir), "--cert", str(d / "server.crt"),
            "--key", str(d / "server.key"), "--ca", str(d / "ca.crt")]
    bad = cli_run(args, env={"LUMINAR_ALLOWED_CIDRS": "10.0.0.300/24"})
    assert bad.exit_code == 1
    assert bad.output.strip() == ("Error: LUMINAR_ALLOWED_CIDRS holds '10.0.0.300/24', which is not an address or "
                                  "network; write networks like 10.0.0.0/24 or 192.168.5.7/32")
    dry = cli_run([*args, "--dry-run"], env={"LUMINAR_ALLOWED_CIDRS": "10.0.0.0/24"})
    assert dry.exit_code == 0
    assert ["hostssl", "all", "all", "10.0.0.0/24", "scram-sha-256", "clientcert=verify-full"] in hba_lines(
        dry.output)
    assert (fake_data_dir / "pg_hba.conf").read_text() == "host all all 0.0.0.0/0 trust\n"


def test_every_tls_command_is_documented_with_an_example() -> None:
    group = cli.commands["tls"]
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert "Example:" in (command.help or ""), name


# -- client settings: production's TLS rules and the replicas' minimum ---------------------------------------------
PROD = {"LUMINAR_ENV": "production", "LUMINAR_DB_PASSWORD": "Zq9-very-secret-Pw"}


def test_production_with_a_root_certificate_defaults_to_verify_full(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="luminar_store"):
        s = load_settings(environ={**PROD, "LUMINAR_DB_SSLROOTCERT": "/etc/luminar/ca.crt",
                                   "LUMINAR_DB_SSLCERT": "/etc/luminar/n.crt",
                                   "LUMINAR_DB_SSLKEY": "/etc/luminar/n.key"})
    assert (s.sslmode, s.sslrootcert, s.sslcert, s.sslkey) == (
        "verify-full", "/etc/luminar/ca.crt", "/etc/luminar/n.crt", "/etc/luminar/n.key")
    assert {k: s.connect_kwargs()[k] for k in ("sslrootcert", "sslcert", "sslkey")} == {
        "sslrootcert": "/etc/luminar/ca.crt", "sslcert": "/etc/luminar/n.crt", "sslkey": "/etc/luminar/n.key"}
    assert not caplog.records


@pytest.mark.parametrize("environ", [{}, {"LUMINAR_DB_SSLMODE": "require", "LUMINAR_DB_SSLROOTCERT": "/ca.crt"},
                                     {"SSL_MODE": "verify-ca", "LUMINAR_DB_SSLROOTCERT": "/ca.crt"}])
def test_production_require_and_verify_ca_warn_once_that_they_do_not_authenticate_the_server(
        environ: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="luminar_store"):
        s = load_settings(environ={**PROD, **environ})
    assert s.sslmode in ("require", "verify-ca")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "does not authenticate the server" in warnings[0] and "verify-full" in warnings[0]


@pytest.mark.parametrize(("environ", "variable"), [
    ({"LUMINAR_DB_SSLMODE": "prefer"}, "LUMINAR_DB_SSLMODE"),
    ({"SSL_MODE": "disable"}, "SSL_MODE"),
    ({"DATABASE_URL": "postgresql://u:Zq9-very-secret-Pw@db/x?sslmode=allow"}, "DATABASE_URL"),
])
def test_production_refuses_below_require_naming_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**PROD, **environ})
    message = str(caught.value)
    assert message.startswith(f"production requires TLS: {variable} gives sslmode="), message
    assert "Zq9-very-secret-Pw" not in message


def test_a_replica_weaker_than_the_primary_is_refused_naming_the_variable_not_the_password() -> None:
    environ = {**PROD, "LUMINAR_DB_SSLROOTCERT": "/ca.crt",
               "LUMINAR_DB_REPLICA_URLS": "postgresql://r:Rpl-secret@r1/db,postgresql://r:Rpl-secret@r2/db?"
                                          "sslmode=disable"}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    message = str(caught.value)
    assert message.startswith("LUMINAR_DB_REPLICA_URLS entry 2 gives sslmode=disable, weaker than the primary's "
                              "sslmode=verify-full"), message
    assert "Rpl-secret" not in message and "r2" not in message


def test_a_replica_without_sslmode_inherits_the_primarys_tls() -> None:
    from psycopg.conninfo import conninfo_to_dict

    s = load_settings(environ={**PROD, "LUMINAR_DB_SSLROOTCERT": "/ca.crt", "LUMINAR_DB_SSLCERT": "/n.crt",
                               "LUMINAR_DB_SSLKEY": "/n.key", "LUMINAR_DB_REPLICA_URLS": "postgresql://r1/db",
                               "LUMINAR_DB_READ_HOST": "r2"})
    for url in s.replica_urls:
        parts = conninfo_to_dict(url)
        assert {k: parts[k] for k in ("sslmode", "sslrootcert", "sslcert", "sslkey")} == {
            "sslmode": "verify-full", "sslrootcert": "/ca.crt", "sslcert": "/n.crt", "sslkey": "/n.key"}
    assert [conninfo_to_dict(u)["host"] for u in s.replica_urls] == ["r1", "r2"]


def test_check_tls_minimum_serves_any_second_connection_such_as_a_sync_source() -> None:
    primary = load_settings(environ={**PROD, "LUMINAR_DB_SSLROOTCERT": "/ca.crt"})
    with pytest.raises(ConfigError, match=r"^LUMINAR_SYNC_SOURCE_URL gives sslmode=require, weaker than"):
        check_tls_minimum("postgresql://central/db?sslmode=require", primary, "LUMINAR_SYNC_SOURCE_URL")
    assert "sslmode=verify-full" in check_tls_minimum("postgresql://central/db", primary, "LUMINAR_SYNC_SOURCE_URL")
    with pytest.raises(ConfigError, match="^LUMINAR_SYNC_SOURCE_URL is not a valid connection string"):
        check_tls_minimum("host=central password", primary, "LUMINAR_SYNC_SOURCE_URL")
    local = load_settings(environ={})
    assert check_tls_minimum("postgresql://r1/db?sslmode=disable", local, "X") == "postgresql://r1/db?sslmode=disable"
