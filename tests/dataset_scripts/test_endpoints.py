"""Several endpoints: fewest outstanding first, a failing one taken out and probed back in, budgets per endpoint."""

import asyncio
import configparser
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import openai
import pytest

from dataset_scripts.endpoints import EndpointPool, environment_proxy, read_url_file, split_credentials
from dataset_scripts.teacher_client import TeacherClient
from recipes.tiny.offline_teacher import OfflineTeacher
from tests.dataset_scripts.helpers_synthesis import API_KEY, REPO, records


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def make_pool(urls=("http://a/v1", "http://b/v1"), **kwargs):
    client = TeacherClient(
        base_url=list(urls), api_key=API_KEY, model="m", sampling={}, timeout=1.0, max_retries=0, concurrency=4,
        rpm=60, tpm=6000,
    )  # fmt: skip
    clock = Clock()
    return EndpointPool(client.pool.endpoints, clock=clock, **kwargs), clock


def test_requests_go_to_the_endpoint_with_fewest_outstanding():
    pool, _ = make_pool(("http://a/v1", "http://b/v1", "http://c/v1"))
    a, b, c = pool.endpoints
    with pool.use() as first, pool.use() as second, pool.use() as third:
        assert {first, second, third} == {a, b, c}
        with pool.use() as fourth:
            assert fourth.outstanding == 2
    a.outstanding = 5
    with pool.use() as chosen:
        assert chosen is not a


def test_a_failing_endpoint_is_taken_out_then_probed_back_in():
    pool, clock = make_pool(failures_to_eject=3, cooldown=10.0)
    bad, good = pool.endpoints
    for _ in range(3):
        pool.failed(bad)
    assert bad.stats["ejections"] == 1
    for _ in range(5):  # while out, everything goes to the good one
        with pool.use() as endpoint:
            assert endpoint is good
    clock.now += 10.0
    with pool.use() as probe:  # due back: exactly one probe
        assert probe is bad and bad.probing
        with pool.use() as other:
            assert other is good
        pool.failed(bad)  # the probe fails: out again, twice as long
    assert bad.cooldown == 20.0 and bad.stats["ejections"] == 2
    clock.now += 19.0
    with pool.use() as endpoint:
        assert endpoint is good
    clock.now += 1.0
    with pool.use() as probe:
        assert probe is bad
        pool.succeeded(bad)
    assert bad.cooldown == 0 and not bad.probing
    with pool.use() as one, pool.use() as two:  # back in service: it shares the load again
        assert {one, two} == {bad, good}


def test_with_every_endpoint_out_requests_still_go_somewhere():
    pool, clock = make_pool(failures_to_eject=1, cooldown=10.0)
    first, second = pool.endpoints
    pool.failed(first)
    clock.now += 1
    pool.failed(second)
    with pool.use() as endpoint:
        assert endpoint is first  # due back first


def test_rate_budgets_are_per_endpoint():
    pool, _ = make_pool()
    a, b = pool.endpoints
    assert a.rpm is not b.rpm and a.tpm is not b.tpm and a.rpm.rate == b.rpm.rate == 1.0


def test_chat_completions_use_one_aiohttp_pool_per_endpoint_and_the_sdk_only_for_batches():
    pool, _ = make_pool()

    async def made_in_the_loop():
        sessions = [endpoint.session for endpoint in pool.endpoints]
        assert all(endpoint._client is None for endpoint in pool.endpoints)  # no SDK client in a live run
        limits = [session.connector.limit for session in sessions]
        await pool.aclose()
        return sessions, limits

    sessions, limits = asyncio.run(made_in_the_loop())
    assert len({id(session) for session in sessions}) == 2 and limits == [8, 8]  # concurrency 4, + 4 spare
    assert [endpoint.chat_url for endpoint in pool.endpoints] == [f"http://{h}/v1/chat/completions" for h in "ab"]
    assert all(isinstance(endpoint.client._client, openai.DefaultAioHttpClient) for endpoint in pool.endpoints)
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    assert "openai[aiohttp]>=" in config["options"]["install_requires"]


def test_credentials_in_a_base_url_are_sent_as_basic_auth():
    pool, _ = make_pool(("http://us%40er:p%3Aw@127.0.0.1:9/v1?x=1", "http://b/v1"))
    with_credentials, plain = pool.endpoints
    assert with_credentials.chat_url == "http://127.0.0.1:9/v1/chat/completions?x=1"
    assert with_credentials.headers == {"Authorization": "Basic dXNAZXI6cDp3"}  # us@er:p:w, replacing the key
    assert plain.headers == {"Authorization": f"Bearer {API_KEY}"}
    sdk_with_credentials, sdk_plain = with_credentials.client, plain.client  # the Batch API's clients
    assert str(sdk_with_credentials.base_url) == "http://127.0.0.1:9/v1/?x=1"  # aiohttp refuses user:pw with a header
    assert sdk_with_credentials.default_headers["Authorization"] == "Basic dXNAZXI6cDp3"
    assert "Authorization" not in sdk_plain.default_headers
    assert split_credentials("https://h/v1") == ("https://h/v1", {})


def test_the_environment_proxy_is_read_once_per_endpoint(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "internal.corp")
    for name in ("https_proxy", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert environment_proxy("https://api.openai.com/v1") == "http://proxy.corp:3128"
    assert environment_proxy("https://vllm.internal.corp/v1") is None  # NO_PROXY
    assert environment_proxy("http://10.0.0.5:8000/v1") is None  # no HTTP_PROXY set
    pool, _ = make_pool(("https://api.openai.com/v1", "https://vllm.internal.corp/v1"))
    assert [endpoint.proxy for endpoint in pool.endpoints] == ["http://proxy.corp:3128", None]


class ForwardingProxy(ThreadingHTTPServer):
    """A plain HTTP proxy that forwards every request to one server and notes the absolute URLs it was asked for."""

    def __init__(self, target: str) -> None:
        self.target, self.asked = target.rstrip("/"), []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_POST(self):
                proxy.asked.append(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = proxy.target + urlsplit(self.path).path.removeprefix("/v1")
                headers = {name: self.headers[name] for name in ("Authorization", "Content-Type")}
                forwarded = urllib.request.Request(url, body, headers, method="POST")
                direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # not through itself
                with direct.open(forwarded, timeout=30) as response:
                    payload = response.read()
                    self.send_response(response.status)
                    self.send_header("Content-Type", response.headers["Content-Type"])
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

        super().__init__(("127.0.0.1", 0), Handler)


def test_requests_go_through_the_environment_proxy(synth, teacher, shapes_dir, tmp_path, monkeypatch):
    proxy = ForwardingProxy(teacher.base_url)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        for name in ("http_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        args = ("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "3")
        _, summary = synth(*args, base_url="http://teacher.invalid/v1", output=tmp_path / "out")  # no such host
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert summary["done"] == 3 and proxy.asked == ["http://teacher.invalid/v1/chat/completions"] * 3


def test_url_file(tmp_path):
    path = tmp_path / "urls.txt"
    path.write_text("# replicas\nhttp://a:8000/v1\n\nhttp://b:8000/v1  # second\n")
    assert read_url_file(str(path)) == ["http://a:8000/v1", "http://b:8000/v1"]
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no base URLs"):
        read_url_file(str(path))


def test_two_teachers_one_failing(synth, shapes_dir, tmp_path):
    with OfflineTeacher(api_key=API_KEY) as good, OfflineTeacher(api_key=API_KEY) as bad:
        bad.set_faults({"server_error": 1.0})
        urls = tmp_path / "urls.txt"
        urls.write_text(f"{bad.base_url}\n")
        out = tmp_path / "out"
        args = ["--mode", "caption-qa", "--input", str(shapes_dir), "--concurrency", "2", "--base-url-file", str(urls)]
        args += ["--endpoint-failures", "2", "--endpoint-cooldown", "600"]
        _, summary = synth(*args, base_url=good.base_url, output=out)
    assert summary["done"] == 24 and len(records(out)) == 24
    # at most the failures that take it out, plus what was already in flight then
    assert bad.stats["requests"] <= 2 + 2
    assert good.stats["requests"] >= 24
    by_endpoint = summary["this_run"]["by_endpoint"]
    assert (
        by_endpoint[bad.base_url] | {"taken_out": 1, "requests": 0, "sent": bad.stats["requests"]}
        == (by_endpoint[bad.base_url])
    )
    assert by_endpoint[good.base_url]["requests"] == 24


def test_work_is_spread_over_healthy_endpoints(synth, shapes_dir, tmp_path):
    with OfflineTeacher(api_key=API_KEY, latency=0.05) as first, OfflineTeacher(api_key=API_KEY, latency=0.05) as two:
        out = tmp_path / "out"
        args = ["--mode", "caption-qa", "--input", str(shapes_dir), "--concurrency", "4"]
        _, summary = synth(*args, "--base-url", two.base_url, base_url=first.base_url, output=out)
        assert summary["done"] == 24
        assert first.stats["requests"] >= 6 and two.stats["requests"] >= 6
