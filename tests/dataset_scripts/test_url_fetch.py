"""Image URLs from untrusted inputs: http(s) only, no private targets by default, every redirect re-checked, one
deadline and one size cap for the whole download."""

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from dataset_scripts import url_fetch
from dataset_scripts.images import SkipImage
from dataset_scripts.inputs import load_items
from dataset_scripts.url_fetch import fetch_url


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path == "/img.png":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)
        elif self.path == "/hop":
            self._redirect("/img.png")
        elif self.path == "/to-ftp":
            self._redirect("ftp://127.0.0.1/img.png")
        elif self.path == "/to-private":
            self._redirect("http://10.255.255.1/img.png")
        elif self.path == "/loop":
            self._redirect("/loop")
        elif self.path == "/endless":  # no Content-Length: the body runs until the server closes
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x" * 1000)
            except OSError:
                pass
        elif self.path == "/trickle":  # a byte every 50 ms: every single read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", "200")
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _skip(url: str, **kwargs) -> SkipImage:
    with pytest.raises(SkipImage) as error:
        fetch_url(url, kwargs.pop("timeout", 5.0), kwargs.pop("max_bytes", 10**6), **kwargs)
    return error.value


def test_loopback_is_refused_unless_private_urls_are_allowed(server):
    skip = _skip(f"{server}/img.png")
    assert skip.reason == "refused" and "127.0.0.1" in skip.detail and "--allow-private-urls" in skip.detail
    assert fetch_url(f"{server}/hop", 5.0, 10**6, allow_private=True) == PNG


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/img.png", "file:///etc/passwd", "gopher://127.0.0.1/"])
def test_only_http_and_https(url):
    skip = _skip(url, allow_private=True)
    assert skip.reason == "refused" and "only http(s)" in skip.detail


def test_every_redirect_hop_is_checked_again(server, monkeypatch):
    assert _skip(f"{server}/to-ftp", allow_private=True).reason == "refused"
    # The first hop counts as public here; the redirect to a private address must still be refused.
    monkeypatch.setattr(url_fetch, "is_public", lambda address: address.is_loopback)
    skip = _skip(f"{server}/to-private")
    assert skip.reason == "refused" and "10.255.255.1" in skip.detail
    assert _skip(f"{server}/loop", allow_private=True).detail.endswith("more than 5 redirects")


def test_size_is_capped_while_streaming(server):
    skip = _skip(f"{server}/endless", allow_private=True, max_bytes=5000)
    assert skip.reason == "oversized"


def test_one_deadline_for_the_whole_download(server):
    skip = _skip(f"{server}/trickle", allow_private=True, timeout=0.5)
    assert skip.reason == "unreachable" and "no complete answer within 0.5 s" in skip.detail


def test_public_addresses_only_by_default():
    import ipaddress

    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fe80::1", "::ffff:10.0.0.1"):
        assert not url_fetch.is_public(ipaddress.ip_address(address)), address
    assert url_fetch.is_public(ipaddress.ip_address("93.184.216.34"))


def test_manifest_urls_follow_the_private_url_switch(server, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"image": f"{server}/img.png"}) + "\n")
    refused = load_items(str(manifest), "caption-qa", "laion")[0]
    with pytest.raises(SkipImage, match="refused"):
        refused.read_image(5.0, 10**6)
    allowed = load_items(str(manifest), "caption-qa", "laion", allow_private_urls=True)[0]
    assert allowed.read_image(5.0, 10**6) == PNG
