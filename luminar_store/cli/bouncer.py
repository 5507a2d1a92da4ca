"""``luminar-db bouncer``: PgBouncer in front of the central primary (``luminar_store.ops.bouncer``).

The administrator's connection (to read the logins' SCRAM secrets) comes from ``--admin-url`` /
``LUMINAR_DB_ADMIN_URL`` and is never printed; neither are the secrets, which only the 0600 ``userlist.txt`` holds.
"""

from __future__ import annotations

from pathlib import Path

import click

from luminar_store.cli.common import env_option, settings_for
from luminar_store.ops.bouncer import BouncerLayout, read_secrets, write_config
from luminar_store.ops.connect import connect

__all__ = ["bouncer_group"]


@click.group("bouncer")
def bouncer_group() -> None:
    """PgBouncer (transaction pooling) in front of the central primary: a connection budget for many nodes.

    \b
    Example: luminar-db bouncer config --env=production --dir /etc/pgbouncer --login miner_7 --pool-size 40
    """


@bouncer_group.command("config")
@env_option
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where to write pgbouncer.ini and userlist.txt (0600; created 0700 when missing).")
@click.option("--login", "logins", multiple=True, required=True, metavar="ROLE",
              help="A node's login that connects through PgBouncer (repeat the option for each).")
@click.option("--admin-url", envvar="LUMINAR_DB_ADMIN_URL", show_envvar=True, required=True, metavar="URL",
              help="A superuser's connection, to read the logins' SCRAM secrets. Never printed.")
@click.option("--listen-addr", default="*", show_default=True, help="Where PgBouncer listens.")
@click.option("--listen-port", type=int, default=6432, show_default=True, help="The port the nodes connect to.")
@click.option("--pool-size", type=click.IntRange(min=1), default=40, show_default=True,
              help="Server connections per database and login (default_pool_size).")
@click.option("--max-db-connections", type=click.IntRange(min=0), default=0, show_default=True,
              help="Server connections over all logins (0: no cap); keep it under the primary's max_connections.")
@click.option("--max-client-conn", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Node connections PgBouncer accepts: nodes x (POOL_SIZE + MAX_OVERFLOW).")
@click.option("--server-host", default=None, help="The primary's own address [default: LUMINAR_DB_DIRECT_URL's "
                                                  "host, else LUMINAR_DB_HOST].")
@click.option("--server-port", type=int, default=None, help="The primary's own port [default: as --server-host].")
@click.option("--client-tls-cert", default=None, help="PgBouncer's certificate: the nodes must then use TLS.")
@click.option("--client-tls-key", default=None, help="The key of --client-tls-cert (readable by PgBouncer only).")
def config_command(env: str | None, directory: Path, logins: tuple[str, ...], admin_url: str, listen_addr: str,
                   listen_port: int, pool_size: int, max_db_connections: int, max_client_conn: int,
                   server_host: str | None, server_port: int | None, client_tls_cert: str | None,
                   client_tls_key: str | None) -> None:
    """Write pgbouncer.ini (transaction pooling, SCRAM, jit off on server connections) and userlist.txt.

    The primary's TLS (server_tls_sslmode, server_tls_ca_file) is the environment's LUMINAR_DB_SSLMODE and
    LUMINAR_DB_SSLROOTCERT. Point the nodes at PgBouncer (LUMINAR_DB_HOST, LUMINAR_DB_PORT) and the owner's commands
    at the primary (LUMINAR_DB_DIRECT_URL): migrations refuse to run through PgBouncer.

    \b
    Example: luminar-db bouncer config --env=production --dir /etc/pgbouncer --login miner_7 --login validator_3
    """
    settings = settings_for(env)  # the owner's view: the primary's own address when LUMINAR_DB_DIRECT_URL is set
    layout = BouncerLayout(
        server_host=server_host or settings.host, server_port=server_port or settings.port, dbname=settings.name,
        listen_addr=listen_addr, listen_port=listen_port, pool_size=pool_size,
        max_db_connections=max_db_connections, max_client_conn=max_client_conn,
        server_tls_sslmode=settings.sslmode, server_tls_ca_file=settings.sslrootcert,
        client_tls_cert=client_tls_cert, client_tls_key=client_tls_key)
    layout.check()
    with connect(settings, admin_url=admin_url) as admin:
        secrets = read_secrets(admin, logins)
    files = write_config(directory, layout, secrets)
    click.echo(f"Wrote {files.ini} and {files.auth_file} (0600, {len(secrets)} login(s)) for {settings.target()}.")
    click.echo(f"Start it: pgbouncer {files.ini}   (as the user that owns both files, never root)")
