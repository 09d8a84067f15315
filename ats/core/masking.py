"""Account-id masking: the one rule for display, alerts and log files (``U1234567`` → ``U***4567``).

Standard library only: the node's log filter (:mod:`ats.trading.node_log`) runs it in a small process
of its own that must start at once.
"""

from __future__ import annotations

import re

# IB account ids: a U/DU (individual, paper) or F/DF (advisor) prefix and digits.  No word
# boundary on the left: Nautilus writes them glued to other text (``INTERACTIVE_BROKERS-DU1234567``),
# and masking a look-alike costs nothing while missing an id leaks it.
ACCOUNT_ID_RE = re.compile(r"(?:DU|DF|U|F)\d{4,}", re.ASCII)


def mask_account(account_id: str | None) -> str:
    """Mask an IB account id for display and alerts: ``U1234567`` → ``U***4567``."""
    if not account_id:
        return "(not set)"
    prefix = account_id[:2] if account_id.startswith(("DU", "DF")) else account_id[:1]
    tail = account_id[-4:] if len(account_id) > len(prefix) + 4 else ""
    return f"{prefix}***{tail}"


def mask_accounts_in(text: str) -> str:
    """``text`` with every IB account id in it masked."""
    return ACCOUNT_ID_RE.sub(lambda m: mask_account(m.group(0)), text)


# Query parameters that carry a secret in a database (libpq: ``?password=``) or service URL.
_SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pass", "pwd", "sslpassword", "secret", "token",
                                "access_token", "api_key", "apikey", "key", "auth"})


def display_url(url: str) -> str:
    """A URL as it may be shown, logged or written beside the data: a password in its user part
    (``user:pw@``, ``:pw@``, one holding a raw ``@``) and secret query parameters (``?password=…``,
    ``token``, ``key``…) replaced by ``***``.  Text that is not a URL comes back unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    location, slash, tail = rest.partition("/")
    if not slash:  # no path: the query may follow the host directly
        location, question, query = location.partition("?")
        tail = f"?{query}" if question else ""
        slash = ""
    userinfo, at, host = location.rpartition("@")  # the last @: a raw @ may sit in the password
    if at:
        user, colon, _password = userinfo.partition(":")
        location = f"{user}:***@{host}" if colon else f"{userinfo}@{host}"
    path, question, query = tail.partition("?")
    if question:
        query, hash_sign, fragment = query.partition("#")
        pieces = []
        for piece in query.split("&"):
            name, equals, _value = piece.partition("=")
            pieces.append(f"{name}=***" if equals and name.lower() in _SECRET_QUERY_KEYS else piece)
        path = f"{path}?{'&'.join(pieces)}{hash_sign}{fragment}"
    return f"{scheme}://{location}{slash}{path}"


def url_secrets(url: str) -> list[str]:
    """The secrets a URL carries (its password, each part of one holding a raw ``@``, secret
    query values), longest first: for scrubbing them from a driver's error message."""
    _scheme, sep, rest = url.partition("://")
    if not sep:
        return []
    location = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo, _at, _host = location.rpartition("@")
    found: set[str] = set()
    _user, colon, password = userinfo.partition(":")
    if colon and password:
        found.add(password)
        found.update(part for part in password.split("@") if len(part) >= 3)
    query = rest.partition("?")[2].partition("#")[0]
    for piece in query.split("&"):
        name, equals, value = piece.partition("=")
        if equals and value and name.lower() in _SECRET_QUERY_KEYS:
            found.add(value)
    return sorted(found, key=len, reverse=True)


def scrub_url_secrets(text: str, url: str) -> str:
    """``text`` (an error message about ``url``) with every secret of ``url`` replaced by ``***``."""
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text
