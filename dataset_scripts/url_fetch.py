"""Downloading an image URL named by untrusted input, without letting the input choose what we reach.

Only http(s). Every hop (the first request and each redirect) is resolved and checked before we connect, and the
connection goes to the address that was checked, so a name cannot resolve to a public address for the check and to
a private one for the request. Loopback, private, link-local (cloud metadata), multicast and reserved targets are
refused unless `allow_private`. One deadline covers the whole download, however slowly the server sends.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse

from dataset_scripts.images import SkipImage


MAX_REDIRECTS = 5
REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is an ordinary internet host (what untrusted URLs may reach by default)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _checked_address(url: str, host: str, port: int, allow_private: bool) -> str:
    """The address to connect to for `host`, after checking every address the name resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise SkipImage("unreachable", f"{url}: cannot resolve {host} ({error})") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise SkipImage(
                    "refused", f"{url}: {host} is a non-public address ({address}); --allow-private-urls allows it"
                )
    return str(addresses[0])


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an address we checked (the Host header still names the host)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(_PinnedHTTP):
    """The same over TLS, with the certificate checked against the host name."""

    _context = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def _abort(connection: http.client.HTTPConnection) -> None:
    """Called by the deadline timer: wakes up a read blocked on a slow server."""
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _get(url: str, connection: _PinnedHTTP, deadline: float, max_bytes: int) -> tuple[int, str | None, bytes]:
    """(status, Location header, body) of one GET; the body is read only for a 200."""
    parts = urllib.parse.urlsplit(url)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    connection.request("GET", target, headers={"User-Agent": "allava-synthesis/1", "Accept": "image/*"})
    response = connection.getresponse()
    if response.status != 200:
        return response.status, response.getheader("Location"), b""
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise SkipImage("oversized", f"{url}: {length} bytes > {max_bytes}")
    body = bytearray()
    while time.monotonic() < deadline:
        chunk = response.read1(_CHUNK)
        if not chunk:
            break
        body += chunk
        if len(body) > max_bytes:
            raise SkipImage("oversized", f"{url}: more than {max_bytes} bytes")
    if time.monotonic() >= deadline:
        raise TimeoutError("deadline passed during the download")
    return 200, None, bytes(body)


def fetch_url(url: str, timeout: float, max_bytes: int, allow_private: bool = False) -> bytes:
    """GET an image within `timeout` seconds in all; refused targets are 'refused', failures 'unreachable'."""
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SkipImage("refused", f"{url}: only http(s) URLs are fetched")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise SkipImage("refused", f"{url}: invalid port") from None
        address = _checked_address(url, parts.hostname, port, allow_private)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SkipImage("unreachable", f"{url}: no answer within {timeout:g} s")
        kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        connection = kind(parts.hostname, port, address, timeout=remaining)
        timer = threading.Timer(remaining, _abort, (connection,))
        timer.daemon = True
        timer.start()
        try:
            status, location, body = _get(url, connection, deadline, max_bytes)
        except (OSError, http.client.HTTPException, ValueError) as error:
            late = time.monotonic() >= deadline
            detail = f"no complete answer within {timeout:g} s" if late else f"{type(error).__name__}: {error}"
            raise SkipImage("unreachable", f"{url}: {detail}") from None
        finally:
            timer.cancel()
            connection.close()
        if status == 200:
            return body
        if status not in REDIRECTS or not location:
            raise SkipImage("unreachable", f"{url}: HTTP {status}")
        url = urllib.parse.urljoin(url, location)
    raise SkipImage("unreachable", f"{url}: more than {MAX_REDIRECTS} redirects")
