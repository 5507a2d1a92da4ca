"""``luminar-db tls ca|server-cert|node-cert|prepare-server``: TLS between the nodes and a production server.

The commands print file paths, never a key's content. Expected failures (a key that exists, a bad network in the
allow-list, a data directory that is not one) print one line and exit non-zero.
"""

from __future__ import annotations

from pathlib import Path

import click

from luminar_store.cli.common import confirm, print_rows, yes_option
from luminar_store.ops.certs import CertPair, issue_node_cert, issue_server_cert, make_ca
from luminar_store.ops.server_tls import ALLOWED_CIDRS_VARIABLE, HBA_METHODS, apply_plan, plan_server

__all__ = ["tls_group"]

_dir_option = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
                           default=Path("tls"), show_default=True, help="Directory the files are written to.")
_ca_options = [
    click.option("--ca-cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="The CA's certificate [default: ca.crt in --dir]."),
    click.option("--ca-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="The CA's private key [default: ca.key in --dir]."),
]


def _with_ca(f):
    for option in reversed(_ca_options):
        f = option(f)
    return f


def _ca(directory: Path, cert: Path | None, key: Path | None) -> CertPair:
    pair = CertPair(cert or directory / "ca.crt", key or directory / "ca.key")
    for path in (pair.cert, pair.key):
        if not path.is_file():
            raise click.ClickException(f"{path} does not exist; make the CA first (luminar-db tls ca --dir "
                                       f"{directory}) or give --ca-cert and --ca-key")
    return pair


@click.group("tls")
def tls_group() -> None:
    """Certificates and server settings for TLS in production.

    Nodes reach the production server over TLS only, from the networks of an allow-list, each with a client
    certificate whose common name (CN) is its database login; the server proves its identity with a certificate
    naming its host (clients use LUMINAR_DB_SSLMODE=verify-full with LUMINAR_DB_SSLROOTCERT). The steps:

    \b
      1. luminar-db tls ca                  a certificate authority (keep ca.key offline)
      2. luminar-db tls server-cert         the server's certificate, naming the hosts clients dial
      3. luminar-db tls node-cert LOGIN     one per node; give it LOGIN.crt, LOGIN.key and ca.crt
      4. luminar-db tls prepare-server      ssl = on, pg_hba.conf with the allow-list, pgAudit

    A node then sets LUMINAR_DB_SSLCERT, LUMINAR_DB_SSLKEY and LUMINAR_DB_SSLROOTCERT.

    Example: luminar-db tls ca --dir /etc/luminar/tls
    """


@tls_group.command("ca")
@_dir_option
@click.option("--name", default="Luminar CA", show_default=True, help="The CA's common name.")
@click.option("--days", type=click.IntRange(1), default=3650, show_default=True, help="Validity in days.")
def ca_command(directory: Path, name: str, days: int) -> None:
    """Make a certificate authority: ca.crt (give it to the server and every node) and ca.key (0600; it signs
    every other certificate: keep it off the servers). An existing ca.key is never overwritten.

    Example: luminar-db tls ca --dir /etc/luminar/tls
    """
    pair = make_ca(directory, name=name, days=days)
    print_rows([("certificate", str(pair.cert)), ("key", f"{pair.key} (0600)")])


@tls_group.command("server-cert")
@_dir_option
@_with_ca
@click.option("--name", "names", multiple=True, required=True,
              help="A host name or IP address clients dial; repeat for each (verify-full refuses any other).")
@click.option("--days", type=click.IntRange(1), default=825, show_default=True, help="Validity in days.")
def server_cert_command(directory: Path, ca_cert: Path | None, ca_key: Path | None, names: tuple[str, ...],
                        days: int) -> None:
    """Issue the server's certificate (server.crt) and key (server.key, 0600), naming every host name and address
    the nodes dial, signed by the CA.

    Example: luminar-db tls server-cert --dir /etc/luminar/tls --name central-db.luminar.network --name 10.0.0.5
    """
    pair = issue_server_cert(directory, _ca(directory, ca_cert, ca_key), list(names), days=days)
    print_rows([("certificate", str(pair.cert)), ("key", f"{pair.key} (0600)"), ("names", ", ".join(names))])


@tls_group.command("node-cert")
@click.argument("login")
@_dir_option
@_with_ca
@click.option("--days", type=click.IntRange(1), default=365, show_default=True, help="Validity in days.")
def node_cert_command(login: str, directory: Path, ca_cert: Path | None, ca_key: Path | None, days: int) -> None:
    """Issue a node's client certificate LOGIN.crt and key LOGIN.key (0600); its CN is LOGIN, the database role the
    node logs in as, and the server accepts it for that role only.

    On the node: LUMINAR_DB_SSLCERT=LOGIN.crt, LUMINAR_DB_SSLKEY=LOGIN.key, LUMINAR_DB_SSLROOTCERT=ca.crt.

    Example: luminar-db tls node-cert miner_7 --dir /etc/luminar/tls
    """
    pair = issue_node_cert(directory, _ca(directory, ca_cert, ca_key), login, days=days)
    print_rows([("certificate", str(pair.cert)), ("key", f"{pair.key} (0600)"), ("login", login)])


@tls_group.command("prepare-server")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The server's data directory (SHOW data_directory), holding postgresql.conf and pg_hba.conf.")
@click.option("--config-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where postgresql.conf and pg_hba.conf live, when not in --data-dir (Debian: "
                   "/etc/postgresql/<major>/main).")
@click.option("--cert", type=click.Path(dir_okay=False, path_type=Path), default=Path("tls/server.crt"),
              show_default=True, help="The server's certificate.")
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path), default=Path("tls/server.key"),
              show_default=True, help="The server's private key.")
@click.option("--ca", type=click.Path(dir_okay=False, path_type=Path), default=Path("tls/ca.crt"),
              show_default=True, help="The CA certificate client certificates must be signed by.")
@click.option("--allowed-cidrs", envvar=ALLOWED_CIDRS_VARIABLE, show_envvar=True, required=True,
              help="The allow-list: networks nodes connect from, comma-separated (10.0.0.0/24,192.168.5.7/32).")
@click.option("--method", type=click.Choice(HBA_METHODS), default="scram-sha-256", show_default=True,
              help="scram-sha-256: the role's password and a certificate whose CN is the login "
                   "(clientcert=verify-full); cert: the certificate alone.")
@click.option("--admin-role", default="postgres", show_default=True,
              help="The role allowed over the Unix socket by peer authentication (the OS user of that name).")
@click.option("--admin-url", default=None, envvar="LUMINAR_DB_ADMIN_URL",
              help="A superuser's connection string: the server checks the new files before reloading them.")
@click.option("--hba-template", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="pg_hba.conf template [default: init-scripts/pg_hba.production.conf.template].")
@click.option("--no-reload", is_flag=True, help="Write the files only; reload or restart the server yourself.")
@click.option("--dry-run", is_flag=True, help="Check the inputs, print the new pg_hba.conf, change nothing.")
@yes_option
def prepare_server_command(data_dir: Path, config_dir: Path | None, cert: Path, key: Path, ca: Path,
                           allowed_cidrs: str, method: str, admin_role: str, admin_url: str | None,
                           hba_template: Path | None, no_reload: bool, dry_run: bool, yes: bool) -> None:
    """Prepare a server for production: TLS on (TLSv1.2 at least), SCRAM passwords, pg_hba.conf allowing only TLS
    with a client certificate from the allow-list (everything else rejected), and pgAudit's logging of DDL and role
    changes when postgresql-<major>-pgaudit is installed.

    Every input is checked first and the files it changes are named before anything is written; the old
    pg_hba.conf is kept beside the new one. TLS and pg_hba.conf take effect on reload, pgAudit on restart.

    Example: LUMINAR_ALLOWED_CIDRS=10.0.0.0/24 luminar-db tls prepare-server --data-dir /var/lib/postgresql/15/main
    """
    plan = plan_server(data_dir, config_dir=config_dir, cert=cert, key=key, ca=ca, allowed_cidrs=allowed_cidrs,
                       method=method, admin_role=admin_role, template=hba_template)
    if dry_run:
        click.echo(plan.hba_text(), nl=False)
        return
    click.echo("will change:")
    for path in plan.changes:
        click.echo(f"  {path}")
    confirm(f"Rewrite the TLS settings and pg_hba.conf in {plan.config_dir}?", yes=yes,
            what=f"prepare-server rewrites {plan.hba_file}")
    report = apply_plan(plan, admin_conninfo=admin_url, reload=not no_reload)
    print_rows([("allow-list", ", ".join(plan.cidrs)), ("method", method),
                ("old pg_hba.conf", str(report.backup)), ("pgaudit", report.pgaudit), ("server", report.reload)])
