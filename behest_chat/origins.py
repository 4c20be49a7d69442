"""Browser origins: parsing the configured lists and matching a request's ``Origin``.

An origin is ``scheme://host[:port]`` exactly as a browser sends it in the ``Origin``
header: lowercase, no path, no trailing slash, and no port when it is the scheme's default.
Matching is exact (Behest contract §7): ``http://`` and ``https://``, or two ports, are two
different origins. Wildcards are refused, because the lists guard credentialed requests.

Pure functions only; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = [
    "OriginError",
    "is_allowed",
    "normalize_origin",
    "parse_origin_list",
    "suggest_line",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginError(ValueError):
    """An origin or origin list that cannot be used; the message is one line."""


def normalize_origin(url: str) -> str:
    """Reduce a URL to its origin as a browser would send it.

    Args:
        url: an absolute ``http``/``https`` URL; any path, query or fragment is dropped.

    Returns:
        ``scheme://host[:port]`` in lowercase, with the default port left out.

    Raises:
        OriginError: the text is not an absolute http(s) URL with a host.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    authority = text.split("://", 1)[-1]
    for separator in "/?#":
        authority = authority.split(separator, 1)[0]
    if "@" in authority:
        # Refused without echoing: the part before "@" may be a password.
        raise OriginError("an origin must not contain a user name or password")
    if parts is None:
        raise OriginError(f"{text!r} is not a valid URL")
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise OriginError(f"{text!r} must start with http:// or https://")
    host = (parts.hostname or "").lower()
    if not host:
        raise OriginError(f"{text!r} has no host")
    if ":" in host:  # IPv6 literal: urlsplit drops the brackets
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_origin_list(text: str, variable: str) -> tuple[str, ...]:
    """Parse a comma-separated list of exact origins.

    Each entry must already be in the form a browser sends (see the module docstring);
    an entry that is equivalent but written differently is refused with the exact form
    to use, so the list matches what the browser sends and what the gateway compares.

    Args:
        text: the raw setting, e.g. ``"http://localhost:3000,https://app.example.com"``.
        variable: the setting's name, used in error messages.

    Returns:
        The origins in the given order, without duplicates.

    Raises:
        OriginError: one line naming ``variable`` and the offending entry.
    """
    origins: list[str] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if "*" in entry:
            raise OriginError(
                f"{variable}: wildcards are not allowed ({entry!r}); list each origin"
            )
        try:
            origin = normalize_origin(entry)
        except OriginError as exc:
            raise OriginError(f"{variable}: {exc}") from None
        parts = urlsplit(entry)
        if parts.path or parts.query or parts.fragment or entry.endswith(("?", "#")):
            raise OriginError(
                f"{variable}: {entry!r} must be an origin without path or trailing slash; "
                f"write {origin!r}"
            )
        if entry != origin:
            raise OriginError(f"{variable}: write {entry!r} as {origin!r} (the form browsers send)")
        if origin not in origins:
            origins.append(origin)
    if not origins:
        raise OriginError(f"{variable}: empty; expected a comma-separated list of origins")
    return tuple(origins)


def is_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """Whether a request's ``Origin`` header is in the allowed list (exact match).

    Args:
        origin: the header value, or ``None`` when the request carried none.
        allowed: origins as returned by :func:`parse_origin_list`.

    Returns:
        ``True`` only for an exact match; ``None`` and ``"null"`` never match.
    """
    if not origin:
        return False
    return origin in tuple(allowed)


def suggest_line(variable: str, current_list: Iterable[str], origin: str) -> str:
    """The ``.env`` line that adds ``origin`` to a list setting.

    Args:
        variable: the setting's name, e.g. ``"BEHEST_ALLOWED_ORIGINS"``.
        current_list: the origins configured now.
        origin: the origin to add; normalised first.

    Returns:
        A line such as ``BEHEST_ALLOWED_ORIGINS=http://localhost:3000,http://127.0.0.1:3000``;
        the current list unchanged when it already contains the origin.

    Raises:
        OriginError: ``origin`` is not an http(s) URL.
    """
    wanted = normalize_origin(origin)
    entries = list(current_list)
    if wanted not in entries:
        entries.append(wanted)
    return f"{variable}={','.join(entries)}"
