"""Redis URLs as shown to people: never with a password."""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``redis://user:secret@host/0`` -> ``redis://user:***@host/0``; the values of query
    parameters redis-py takes as passwords (``?password=``, ``?ssl_password=``) become ``***`` too."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    out = url
    if parts.password is not None or "@" in parts.netloc:
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        redacted = f"{user}:***@{host}" if user else f":***@{host}"
        out = urlunsplit(parts._replace(netloc=redacted))
    if "password" in unquote_plus(parts.query).lower():
        head, sep, tail = out.partition("?")
        query, hash_, fragment = tail.partition("#")
        out = head + sep + "&".join(_redact_param(p) for p in query.split("&")) + hash_ + fragment
    return out


def _redact_param(param: str) -> str:
    name, sep, _ = param.partition("=")
    return f"{name}=***" if sep and "password" in unquote_plus(name).lower() else param


def redact_text(text: str, secret: str | None) -> str:
    """Replace every occurrence of ``secret`` in ``text``."""
    return text.replace(secret, "***") if secret else text
