"""The shared LLM client (`lorasae.core.llm`) and the steering eval's example generation against a stand-in
OpenAI-compatible server on 127.0.0.1 (no network)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lorasae.core.llm import LLMClient, LLMError, LLMSettings
from lorasae.saebench.autointerp import AutoInterpEvalConfig, judge_settings
from lorasae.steering.example_sources import generate_llm_examples


class FakeLLM:
    """Serves /v1/chat/completions from a script of (status, reply text) pairs; records the requests."""

    def __init__(self, script: list[tuple[int, str]]) -> None:
        self.script = list(script)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append(body)
                    status, text = (
                        outer.script.pop(0) if outer.script else (200, "1. Fallback reply text here.")
                    )
                if status != 200:
                    payload = {"error": {"message": f"scripted {status}", "type": "server_error"}}
                else:
                    payload = {
                        "id": "cmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text},
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLM:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _client(url: str, sleeps: list[float], **kw) -> LLMClient:
    settings = LLMSettings(api_key="test-key", base_url=url, model="stand-in", timeout=10, backoff=0.5, **kw)
    return LLMClient(settings, sleep=sleeps.append)


@pytest.fixture
def no_proxy(monkeypatch) -> Iterator[None]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield


def test_generation_retries_parses_and_dedups(no_proxy):
    replies = [
        (500, ""),
        (
            200,
            '1. "Stars fuse hydrogen into helium."\n2. Cells divide by mitosis.\n3. stars fuse HYDROGEN into helium',
        ),
        (
            200,
            "1. Cells divide by mitosis!\n2. Gravity bends the path of light.\n3. Electrons orbit the nucleus.",
        ),
        (200, "- Magnets attract iron filings.\n- Plants turn light into sugar."),
    ]
    sleeps: list[float] = []
    with FakeLLM(replies) as server:
        client = _client(server.url, sleeps)
        report = generate_llm_examples(
            client,
            "science facts",
            num_examples=5,
            seed_examples=["Water boils at one hundred degrees."],
            per_call=3,
            words=8,
            concurrency=1,
            existing=["Electrons orbit the nucleus"],
        )
    assert report.examples == [
        "Stars fuse hydrogen into helium.",
        "Cells divide by mitosis.",
        "Gravity bends the path of light.",
        "Magnets attract iron filings.",
        "Plants turn light into sugar.",
    ]
    assert report.retries == 1 and len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5  # one backoff, jittered
    assert report.requests == len(server.requests) == 4  # the failed attempt + three successful calls
    assert report.duplicates == 3  # repeated star fact, repeated mitosis, electrons already known
    prompt = server.requests[0]["messages"][-1]["content"]
    assert "science facts" in prompt and "Water boils" in prompt and "3 different short texts" in prompt
    assert server.requests[0]["model"] == "stand-in"


def test_generation_is_bounded_when_replies_repeat(no_proxy):
    same = (200, "1. The only example the model knows.")
    with FakeLLM([same] * 50) as server:
        report = generate_llm_examples(
            _client(server.url, []), "anything", num_examples=10, per_call=5, concurrency=2, max_calls=6
        )
        assert len(server.requests) == 6
    assert report.calls == 6 and report.examples == ["The only example the model knows."]


def test_persistent_errors_give_up(no_proxy):
    sleeps: list[float] = []
    with FakeLLM([(503, "")] * 10) as server:
        with pytest.raises(LLMError, match="every LLM request failed"):
            generate_llm_examples(
                _client(server.url, sleeps, max_retries=2), "x", num_examples=3, concurrency=1
            )
        assert len(server.requests) == 3  # first attempt + two retries, then the call is abandoned
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.9

    with FakeLLM([(400, "")]) as server:
        with pytest.raises(LLMError, match="failed"):
            _client(server.url, []).complete([{"role": "user", "content": "hi"}])
        assert len(server.requests) == 1  # client errors are not retried


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = LLMSettings.from_env()
    assert not settings.available
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        LLMClient(settings)


def test_autointerp_judge_goes_through_the_shared_client_and_its_retries(no_proxy, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", "judge-key")
    monkeypatch.setenv("OPENAI_MODEL", "not-the-judge")  # the judge model comes from the config
    sleeps: list[float] = []
    with FakeLLM([(503, ""), (200, "the letter e")]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)  # no base_url in the config: the environment's
        config = AutoInterpEvalConfig(judge_model="stand-in", api_key_env="JUDGE_TEST_KEY", max_retries=1)
        settings = judge_settings(config)
        assert settings.api_key == "judge-key" and settings.base_url == server.url
        client = LLMClient(settings, sleep=sleeps.append)
        assert client.complete([{"role": "user", "content": "explain"}], 7) == "the letter e"
    assert client.requests == 2 and client.retries == 1 and len(sleeps) == 1  # the 503 was retried once
    body = server.requests[-1]
    assert body["model"] == "stand-in" and body["max_tokens"] == 7 and "temperature" not in body


def test_missing_judge_key_names_its_variable(monkeypatch):
    monkeypatch.delenv("JUDGE_TEST_KEY", raising=False)
    settings = judge_settings(AutoInterpEvalConfig(api_key_env="JUDGE_TEST_KEY"))
    assert not settings.available
    with pytest.raises(LLMError, match="JUDGE_TEST_KEY"):
        LLMClient(settings)
