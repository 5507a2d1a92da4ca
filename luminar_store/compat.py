"""Compatibility with the network's reference node code: the ``database.access`` module it imports.

Nodes (miners, validators) run code written against the reference access layer, which imports
``from database.access import db``. Rather than installing a top-level ``database`` package into every environment
(where it would shadow or be shadowed by other packages of that name), ``write_node_shim(directory)`` writes two
tiny files into the node's repository, ``database/__init__.py`` and ``database/access.py``, re-exporting
``luminar_store.access``'s public names. The command is ``luminar-db node-shim [DIR]``.

Example::

    written = write_node_shim(Path("~/LUM-subnet").expanduser())
    # [("database/__init__.py", "wrote"), ("database/access.py", "wrote")]
"""

from __future__ import annotations

from pathlib import Path

from luminar_store.errors import OperationError

__all__ = ["SHIM_NAMES", "SHIM_FILES", "write_node_shim"]

#: What ``database.access`` offers the node code: the names of the reference module that luminar_store answers.
SHIM_NAMES = ("db", "DatabaseStats", "DatabaseTransaction", "initialize_database", "close_database", "health_check")

_HEADER = "# Written by `luminar-db node-shim` (luminar_store); regenerate it rather than edit it.\n"

#: The files written, relative to the node's directory, and their exact text.
SHIM_FILES: dict[str, str] = {
    "database/__init__.py": _HEADER + '"""The reference\'s ``database`` package, served by luminar_store."""\n',
    "database/access.py": _HEADER + (
        '"""``from database.access import db``: luminar_store\'s facade (``luminar_store.access``) under the\n'
        'reference\'s module name. Settings: ``.env`` and the environment (``LUMINAR_ENV``, ``LUMINAR_DB_*``)."""\n'
        "\n"
        "from luminar_store.access import (\n"
        + "".join(f"    {name},\n" for name in sorted(SHIM_NAMES, key=str.lower))
        + ")\n"
        "\n"
        "__all__ = [" + ", ".join(f'"{name}"' for name in SHIM_NAMES) + "]\n"
    ),
}


def write_node_shim(directory: Path, *, force: bool = False) -> list[tuple[Path, str]]:
    """Write ``SHIM_FILES`` under ``directory`` (created if missing) and return ``(path, what)`` for each file,
    ``what`` being ``wrote``, ``unchanged`` (already identical) or ``replaced`` (different, with ``force``).

    Every file is checked before any is written: when one exists with other content and ``force`` is false,
    nothing is written and ``OperationError`` names the files (``--force`` replaces them).
    """
    targets = [(directory / relative, text) for relative, text in SHIM_FILES.items()]
    for path in [directory, directory / "database"]:
        if path.exists() and not path.is_dir():
            raise OperationError(f"{path} exists and is not a directory")
    different = [path for path, text in targets
                 if path.exists() and (not path.is_file() or path.read_bytes() != text.encode("utf-8"))]
    unwritable = [path for path in different if not path.is_file()]
    if unwritable:
        raise OperationError(f"{', '.join(map(str, unwritable))}: exists and is not a file; nothing written")
    if different and not force:
        raise OperationError(f"{', '.join(map(str, different))}: exists with other content (the reference's own "
                             "database module?); nothing written; --force replaces it")
    done = []
    for path, text in targets:
        if path.exists() and path not in different:
            done.append((path, "unchanged"))
            continue
        action = "replaced" if path.exists() else "wrote"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        done.append((path, action))
    return done
