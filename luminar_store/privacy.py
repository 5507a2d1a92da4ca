"""Pseudonymised reporter ids: the one definition, applied once, where a report's row is built.

A reporter's id (``user_id``, the input's ``reporter_id``) is a person's account at the app that filed the report:
a victim's or a witness's. With pseudonymisation on (``LUMINAR_PSEUDONYMIZE``; the default in testnet, staging and
production) the database holds, instead of the id, its keyed hash under ``LUMINAR_PSEUDONYM_KEY``::

    p1:<key id>:<HMAC-SHA256(key, reporter id) in hex>

``p1`` names this scheme; the key id is 8 hex digits derived from the key (not the key: it cannot be turned back
into it), so a stored pseudonym says which key made it. The same id under the same key always gives the same
pseudonym (reports of one reporter stay linkable, and idempotent stores stay idempotent); under another key it gives
another. A value already in this form is left as it is, so a pseudonym is never pseudonymised twice (reports copied
from a central database, a report sent again).

Key rotation: a new key gives new pseudonyms from then on; pseudonyms made under the old key stay as they are and
are linkable to a reporter only by someone holding the old key. The README's section on pseudonymised reporter ids
gives the procedure.

Example::

    >>> names = Pseudonyms("x" * 32)
    >>> names("user-42") == names("user-42") and names("user-42").startswith("p1:")
    True
    >>> names(names("user-42")) == names("user-42")
    True
"""

from __future__ import annotations

import hashlib
import hmac
import re

from luminar_store.errors import ConfigError

__all__ = ["KEY_VARIABLE", "SWITCH_VARIABLE", "MIN_KEY_LENGTH", "SCHEME", "MAKE_KEY_HINT", "Pseudonyms",
           "check_key", "is_pseudonym", "key_missing"]

#: The variable holding the key, and the one switching pseudonymisation on or off.
KEY_VARIABLE = "LUMINAR_PSEUDONYM_KEY"
SWITCH_VARIABLE = "LUMINAR_PSEUDONYMIZE"
#: Characters a key must have at least (``secrets.token_hex(32)`` gives 64).
MIN_KEY_LENGTH = 32
#: The scheme's tag: HMAC-SHA256, key id, hex digest. A new scheme would take ``p2``.
SCHEME = "p1"
#: How to make a key, for messages.
MAKE_KEY_HINT = "make one with: python -c \"import secrets; print(secrets.token_hex(32))\""

_PSEUDONYM = re.compile(rf"{SCHEME}:[0-9a-f]{{8}}:[0-9a-f]{{64}}")
_KEY_ID_LABEL = b"luminar pseudonym key id"


def check_key(key: str) -> bytes:
    """The key as bytes; ``ConfigError`` naming ``LUMINAR_PSEUDONYM_KEY`` and the rule when it is too short (the
    message never shows the key)."""
    if not isinstance(key, str) or len(key.strip()) < MIN_KEY_LENGTH:
        raise ConfigError(f"{KEY_VARIABLE} is too short: it must have at least {MIN_KEY_LENGTH} characters; "
                          f"{MAKE_KEY_HINT}")
    return key.strip().encode("utf-8")


def key_missing(env: str) -> ConfigError:
    """The refusal for pseudonymisation on without a key (``env``: the environment, for the message)."""
    return ConfigError(f"{SWITCH_VARIABLE} is on ({env}) but {KEY_VARIABLE} is not set: reporters' ids would be "
                       f"stored in clear; {MAKE_KEY_HINT} and keep it secret (see the README on key rotation)")


def is_pseudonym(value: object) -> bool:
    """True when ``value`` is already a pseudonym of this scheme (``p1:<key id>:<64 hex>``), under any key."""
    return isinstance(value, str) and _PSEUDONYM.fullmatch(value) is not None


class Pseudonyms:
    """Turns reporter ids into pseudonyms under one key. ``repr()`` shows the key id only, never the key.

    Raises ``ConfigError`` for a key shorter than ``MIN_KEY_LENGTH`` characters.
    """

    __slots__ = ("_key", "key_id")

    def __init__(self, key: str) -> None:
        self._key = check_key(key)
        #: 8 hex digits naming the key in every pseudonym it makes (derived from the key, not revealing it).
        self.key_id = hmac.new(self._key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"<Pseudonyms {SCHEME} key_id={self.key_id}>"

    def __call__(self, reporter_id: str | None) -> str | None:
        """The pseudonym of ``reporter_id``; ``None`` stays ``None`` and a pseudonym stays as it is."""
        if reporter_id is None or is_pseudonym(reporter_id):
            return reporter_id
        digest = hmac.new(self._key, reporter_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{SCHEME}:{self.key_id}:{digest}"
