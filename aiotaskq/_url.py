"""Redis URLs as shown to people: never with a password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``redis://user:secret@host/0`` -> ``redis://user:***@host/0``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None and "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    redacted = f"{user}:***@{host}" if user else f":***@{host}"
    return urlunsplit(parts._replace(netloc=redacted))


def redact_text(text: str, secret: str | None) -> str:
    """Replace every occurrence of ``secret`` in ``text``."""
    return text.replace(secret, "***") if secret else text
