"""Roles and node identities: who may do what, and which node a login is.

The grants and row-level security live in the migrations (``20261130020000_roles_and_node_identity``); what needs
an administrator (cluster-wide roles, membership of ``pg_monitor``) is done here, through an administrator's
connection (``--admin-url``: a superuser, or a role with CREATEROLE):

- ``provision_roles``: the group roles of ``GROUP_ROLES`` (NOLOGIN), ``pg_monitor`` for ``luminar_monitor``;
- ``add_node``: a node's own login (named for its hotkey or uid), a member of its kind's group, named in
  ``node_identities`` with its uid, so that row-level security keeps it to its own rows. Its password, when it has
  one, is sent as a SCRAM verifier (never in clear); a node without one logs in by certificate (CN = login);
- ``revoke_node``: the login may no longer log in, leaves its group, loses its identity, and its sessions end.
  Its rows and the audit trail stay.

Example::

    >>> with connect(settings, admin_url=admin) as conn:
    ...     provision_roles(conn)
    ...     add_node(conn, "miner_7", kind="miner", uid=7)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from luminar_store.errors import ConflictError, NotFoundError, OperationError, ValidationError
from luminar_store.ops.provision import scram_verifier

__all__ = ["GROUP_ROLES", "NODE_KINDS", "Node", "provision_roles", "missing_roles", "add_node", "revoke_node",
           "check_login", "list_nodes", "name_local_node"]

#: The group roles and what each is for (the migration grants each exactly this).
GROUP_ROLES: dict[str, str] = {
    "luminar_ingest": "the apps' intake: files raw reports",
    "luminar_miner": "claims and settles reports, stores and geocodes its own events",
    "luminar_validator": "verdicts, its own consensus records, miners' and its own scores",
    "luminar_reader": "the public views only (dashboards, the public)",
    "luminar_analyst": "every table read-only, the audit trail included (operators' exports)",
    "luminar_sync": "every table read-only (local copies and replicas)",
    "luminar_monitor": "pg_monitor and the figures' tables and views",
}
#: A node's kind and its group role.
NODE_KINDS: dict[str, str] = {"ingest": "luminar_ingest", "miner": "luminar_miner", "validator": "luminar_validator"}
_LOGIN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

LIST_NODES = """
SELECT n.login, n.kind, n.uid, n.created_at, coalesce(r.rolcanlogin, false) AS can_login
  FROM node_identities n LEFT JOIN pg_roles r ON r.rolname = n.login
 ORDER BY n.kind, n.uid NULLS FIRST, n.login
"""
UID_HOLDER = "SELECT login FROM node_identities WHERE kind = %(kind)s AND uid = %(uid)s AND login <> %(login)s"
ADD_LOCAL_IDENTITY = """
INSERT INTO node_identities (login, kind, uid, note) VALUES (%(login)s, %(kind)s, NULL, 'this machine''s nodes')
ON CONFLICT (login, kind) DO NOTHING
"""
ADD_IDENTITY = """
INSERT INTO node_identities (login, kind, uid) VALUES (%(login)s, %(kind)s, %(uid)s)
ON CONFLICT (login, kind) DO UPDATE SET uid = EXCLUDED.uid
"""


@dataclass(frozen=True)
class Node:
    """One row of ``node_identities`` and whether its login may log in."""

    login: str
    kind: str
    uid: int | None
    can_login: bool


def missing_roles(conn: psycopg.Connection) -> list[str]:
    """The group roles of ``GROUP_ROLES`` the server does not have."""
    present = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%(names)s)",
                                              {"names": list(GROUP_ROLES)}).fetchall()}
    return [name for name in GROUP_ROLES if name not in present]


def provision_roles(admin: psycopg.Connection) -> list[str]:
    """Create the missing group roles (NOLOGIN) and make ``luminar_monitor`` a member of ``pg_monitor``, through an
    administrator's session; returns the roles created. Idempotent.

    Raises ``OperationError`` when the session may not create roles (neither superuser nor CREATEROLE).
    """
    created = []
    try:
        for name in missing_roles(admin):
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
            created.append(name)
        admin.execute("GRANT pg_monitor TO luminar_monitor")
    except psycopg.errors.InsufficientPrivilege:
        raise OperationError("creating roles needs a superuser or a role with CREATEROLE; pass --admin-url with "
                             "such a role's connection") from None
    return created


def check_login(login: str) -> str:
    """``login`` when it is a usable name for a node's login; ``ValidationError`` naming the rule otherwise."""
    if not isinstance(login, str) or not _LOGIN.match(login):
        raise ValidationError("login", "must be 1..63 lower-case letters, digits or _ and not start with a digit "
                                       f"(e.g. miner_7), got {login!r}")
    if login in GROUP_ROLES or login.startswith("pg_"):
        raise ValidationError("login", f"{login} is a reserved role name; name the node for its hotkey or uid")
    return login


def add_node(admin: psycopg.Connection, login: str, *, kind: str, uid: int | None,
             password: str | None = None) -> bool:
    """Give a node its login: create ``login`` (LOGIN; with ``password`` as a SCRAM verifier, else certificate
    only) when missing, make it a member of its kind's group, and name it in ``node_identities`` as ``kind`` with
    ``uid`` (``None``: every uid of the kind — a single operator's node). ``admin`` is an administrator's session
    on the Luminar database. Returns True when the login was created. All or nothing.

    Raises ``ValidationError`` (bad login, kind or uid), ``ConflictError`` (the uid is another login's),
    ``OperationError`` (the group roles are missing: provision them first; the session may not create roles).
    """
    login = check_login(login)
    if kind not in NODE_KINDS:
        raise ValidationError("kind", f"must be one of {', '.join(NODE_KINDS)}, got {kind!r}")
    if uid is not None and (isinstance(uid, bool) or not isinstance(uid, int) or uid < 0):
        raise ValidationError("uid", f"must be a whole number of at least 0, got {uid!r}")
    if missing_roles(admin):
        raise OperationError(f"the group roles {', '.join(missing_roles(admin))} are missing; run "
                             "`luminar-db roles provision --admin-url URL` first")
    with admin.transaction():
        if uid is not None:
            holder = admin.execute(UID_HOLDER, {"kind": kind, "uid": uid, "login": login}).fetchone()
            if holder:
                raise ConflictError(f"{kind} uid {uid} is login {holder[0]}'s; revoke it first "
                                    f"(`luminar-db roles revoke-node {holder[0]}`)")
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %(login)s", {"login": login}).fetchone()
        try:
            if not exists:
                verifier = sql.Literal(scram_verifier(password)) if password else sql.SQL("NULL")
                admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(login), verifier))
            else:
                admin.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(login)))
            admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(NODE_KINDS[kind]), sql.Identifier(login)))
        except psycopg.errors.InsufficientPrivilege:
            raise OperationError("creating a node's login needs a superuser or a role with CREATEROLE; pass "
                                 "--admin-url with such a role's connection") from None
        admin.execute(ADD_IDENTITY, {"login": login, "kind": kind, "uid": uid})
    return not exists


def revoke_node(admin: psycopg.Connection, login: str) -> list[str]:
    """Revoke a node: its login may no longer log in, leaves every group of ``NODE_KINDS``, its identities are
    removed and its open sessions end. Returns the kinds it was named for. Its rows and audit entries stay.

    Raises ``ValidationError`` (bad login), ``NotFoundError`` (no such login).
    """
    login = check_login(login)
    if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %(login)s", {"login": login}).fetchone():
        raise NotFoundError(f"login {login}: no such role on this server")
    with admin.transaction():
        kinds = [row[0] for row in admin.execute(
            "DELETE FROM node_identities WHERE login = %(login)s RETURNING kind", {"login": login}).fetchall()]
        admin.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(login)))
        for group in NODE_KINDS.values():
            admin.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(login)))
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %(login)s",
                  {"login": login})
    return sorted(kinds)


def name_local_node(conn: psycopg.Connection, login: str) -> None:
    """Name ``login`` in ``node_identities`` for every uid of every kind (a database run on this machine: one
    operator runs all its nodes under one login). ``conn`` is the owner's. Idempotent."""
    for kind in NODE_KINDS:
        conn.execute(ADD_LOCAL_IDENTITY, {"login": login, "kind": kind})


def list_nodes(conn: psycopg.Connection) -> list[Node]:
    """The nodes named in ``node_identities``, by kind and uid."""
    return [Node(login, kind, uid, can_login) for login, kind, uid, _, can_login in conn.execute(LIST_NODES)]
