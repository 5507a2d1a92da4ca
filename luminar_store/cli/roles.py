"""``luminar-db roles``: the group roles, and each node's own login and identity (``luminar_store.ops.roles``).

Every command names its exact target (database, host, port, environment; never a password) before it acts. The
administrator's connection comes from ``--admin-url`` / ``LUMINAR_DB_ADMIN_URL`` and is never printed.
"""

from __future__ import annotations

import os

import click

from luminar_store.cli.common import confirm, env_option, settings_for
from luminar_store.errors import ConfigError
from luminar_store.ops import roles
from luminar_store.ops.connect import connect

__all__ = ["roles_group"]

admin_option = click.option(
    "--admin-url", envvar="LUMINAR_DB_ADMIN_URL", show_envvar=True, required=True, metavar="URL",
    help="A superuser's (or CREATEROLE role's) connection; the database is the environment's. Never printed.")


def _password_from(variable: str) -> str:
    """The password held by environment variable ``variable`` (never on the command line, never printed)."""
    password = os.environ.get(variable)
    if not password:
        raise ConfigError(f"--password-env {variable}: that variable is not set or empty")
    return password


@click.group("roles")
def roles_group() -> None:
    """Who may do what: the group roles of each kind of user, and each node's own login.

    Nodes never connect as the owner of the schema. Each kind of user is a group role holding exactly the rights
    its calls need (the migrations grant them); each node logs in as itself (named for its hotkey or uid, by
    certificate or password), a member of its kind's group, and is named with its uid in node_identities, so
    row-level security keeps it to its own rows. See docs/security.md.

    \b
    Example: luminar-db roles provision --env=production --admin-url postgresql://postgres@db/postgres
    Example: luminar-db roles add-node miner_7 --kind miner --uid 7 --env=production
    """


@roles_group.command("provision")
@env_option
@admin_option
def provision_command(env: str | None, admin_url: str) -> None:
    """Create the missing group roles (NOLOGIN) and give luminar_monitor pg_monitor. Idempotent.

    \b
    Example: luminar-db roles provision --env=production --admin-url postgresql://postgres@db/postgres
    """
    settings = settings_for(env)
    click.echo(f"Target: the server of {settings.target()}")
    with connect(settings, admin_url=admin_url) as admin:
        created = roles.provision_roles(admin)
    click.echo(f"Created {', '.join(created)}." if created else "Every group role was already there.")
    for name, purpose in roles.GROUP_ROLES.items():
        click.echo(f"  {name:<18} {purpose}")


@roles_group.command("add-node")
@click.argument("login")
@click.option("--kind", type=click.Choice(list(roles.NODE_KINDS)), required=True, help="What the node is.")
@click.option("--uid", type=click.IntRange(0), default=None,
              help="Its uid on the network (required for miners and validators unless --any-uid).")
@click.option("--any-uid", is_flag=True, help="Let the login act for every uid of its kind (a single operator's "
                                              "node or service; never for a network node).")
@click.option("--password-env", metavar="VAR", default=None,
              help="Name of an environment variable holding the login's password (sent as a SCRAM verifier). "
                   "Without it the node logs in by certificate only (CN = login: luminar-db tls node-cert).")
@env_option
@admin_option
def add_node_command(login: str, kind: str, uid: int | None, any_uid: bool, password_env: str | None,
                     env: str | None, admin_url: str) -> None:
    """Give a node its own login, in its kind's group, named with its uid.

    The login may then do exactly what its kind may (docs/security.md) and, under row-level security, only for
    its uid: a miner's events and claims, a validator's verdicts and records. Adding a known login again updates
    its uid.

    \b
    Example: luminar-db roles add-node miner_7 --kind miner --uid 7 --env=production
    Example: NODE_PW=... luminar-db roles add-node app_gateway --kind ingest --password-env NODE_PW
    """
    if kind != "ingest" and uid is None and not any_uid:
        raise click.UsageError(f"a {kind} node needs --uid (or --any-uid for a single operator's node)")
    password = _password_from(password_env) if password_env else None
    settings = settings_for(env)
    click.echo(f"Target: {settings.target()}")
    with connect(settings, admin_url=admin_url) as admin:
        created = roles.add_node(admin, login, kind=kind, uid=uid, password=password)
    who = "every uid" if uid is None else f"uid {uid}"
    click.echo(f"{'Created' if created else 'Updated'} login {login}: {kind} ({roles.NODE_KINDS[kind]}) for {who}, "
               f"{'password' if password else 'certificate'} authentication.")


@roles_group.command("add-replicator")
@click.argument("login")
@click.option("--password-env", metavar="VAR", required=True,
              help="Name of an environment variable holding its password (sent as a SCRAM verifier).")
@env_option
@admin_option
def add_replicator_command(login: str, password_env: str, env: str | None, admin_url: str) -> None:
    """On central: the login a local copy's subscription connects as (luminar-db realtime): REPLICATION,
    BYPASSRLS (the initial copy reads whole tables) and luminar_sync (read-only).

    \b
    Example: COPY_PW=... luminar-db roles add-replicator central_copy --password-env COPY_PW --env=production
    """
    from luminar_store.ops.realtime import add_replicator

    password = _password_from(password_env)
    settings = settings_for(env)
    click.echo(f"Target: the server of {settings.target()}")
    with connect(settings, admin_url=admin_url) as admin:
        created = add_replicator(admin, login, password)
    click.echo(f"{'Created' if created else 'Updated'} replicator login {login} (REPLICATION, BYPASSRLS, "
               "luminar_sync).")


@roles_group.command("revoke-node")
@click.argument("login")
@click.option("--yes", is_flag=True, help="Do not ask (needed when stdin is not a terminal).")
@env_option
@admin_option
def revoke_node_command(login: str, yes: bool, env: str | None, admin_url: str) -> None:
    """Revoke a node: its login can no longer log in, leaves its group, loses its uid; its sessions end now.

    Its events, records and the audit trail stay. Revoke its certificate too (docs/security.md).

    \b
    Example: luminar-db roles revoke-node miner_7 --env=production --yes
    """
    settings = settings_for(env)
    click.echo(f"Target: login {login} on {settings.target()}")
    confirm(f"Revoke login {login}?", yes=yes, what=f"revoke-node ends login {login}'s access")
    with connect(settings, admin_url=admin_url) as admin:
        kinds = roles.revoke_node(admin, login)
    click.echo(f"Revoked login {login} ({', '.join(kinds) or 'no identity'}): it can no longer log in.")


@roles_group.command("list")
@env_option
def list_command(env: str | None) -> None:
    """List the nodes named in node_identities: login, kind, uid, whether it may log in.

    \b
    Example: luminar-db roles list --env=production
    """
    settings = settings_for(env)
    click.echo(f"Target: {settings.target()}")
    with connect(settings) as conn:
        nodes = roles.list_nodes(conn)
    if not nodes:
        click.echo("No node is named yet (luminar-db roles add-node).")
    for node in nodes:
        uid = "every uid" if node.uid is None else f"uid {node.uid}"
        click.echo(f"  {node.login:<24} {node.kind:<10} {uid:<12} {'' if node.can_login else '(revoked)'}")
