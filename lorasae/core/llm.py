"""The one OpenAI-compatible chat client: the autointerp judge (`saebench/autointerp.py`) and the steering
eval's LLM positives and negatives (`steering/examples.py`) both go through `LLMClient`, so they share one
retry policy and read the endpoint from the same place.

Settings: the key from `$OPENAI_API_KEY` (or another variable named by the caller, e.g. run_eval.py's
`--api_key_env`), the endpoint from the caller or `$OPENAI_BASE_URL` (default: OpenAI's), the model from
the caller or `$OPENAI_MODEL` (default gpt-4o-mini); `.env` is loaded into the environment by
`lorasae.core.runtime.setup_environment`.

Retry policy: connection errors, timeouts, 408/409/429 and 5xx are retried up to `max_retries` times after
the first attempt, waiting the server's `Retry-After` when it sends one, else an exponential backoff
(`backoff · 2^attempt` seconds, capped at `max_backoff`, with jitter); other errors fail at once. The
openai library's own retries are off, so every retry is ours and counted.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lorasae.core.errors import LorasaeError

API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
MODEL_ENV = "OPENAI_MODEL"
DEFAULT_LLM_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5

Messages = list[dict[str, str]]


@dataclass
class LLMSettings:
    """How to reach an OpenAI-compatible chat-completions endpoint."""

    api_key: str | None = None
    base_url: str | None = None
    model: str = DEFAULT_LLM_MODEL
    temperature: float | None = 0.8
    """Sampling temperature; None leaves it to the endpoint (SAEBench's judge sends none)."""
    max_tokens: int = 2000
    """Reply length when a request does not say."""
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    """Retries per request after the first attempt (retryable errors only)."""
    backoff: float = 2.0
    """First retry delay in seconds; doubled each retry (with jitter), capped at `max_backoff`."""
    max_backoff: float = 60.0
    api_key_env: str = API_KEY_ENV
    """The variable the key was read from (named in errors; the key itself is never printed)."""

    @classmethod
    def from_env(
        cls,
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str = API_KEY_ENV,
        **kwargs,
    ) -> LLMSettings:
        """Settings from the arguments, falling back to the environment (see the module docstring)."""
        return cls(
            api_key=os.environ.get(api_key_env, "").strip() or None,
            base_url=base_url or os.environ.get(BASE_URL_ENV) or None,
            model=model or os.environ.get(MODEL_ENV) or DEFAULT_LLM_MODEL,
            api_key_env=api_key_env,
            **kwargs,
        )

    @property
    def available(self) -> bool:
        return bool(self.api_key)


class LLMError(LorasaeError, RuntimeError):
    pass


def _retryable(err: Exception) -> bool:
    import openai

    if isinstance(err, openai.APIConnectionError | openai.APITimeoutError):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code in (408, 409, 429) or err.status_code >= 500
    return False


def _retry_after(err: Exception) -> float | None:
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class LLMClient:
    """A chat-completions client with bounded retries and exponential backoff; safe to share between
    threads (the evals send requests from a thread pool)."""

    def __init__(
        self,
        settings: LLMSettings,
        client=None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int = 0,
    ) -> None:
        if client is None:
            if not settings.available:
                raise LLMError(
                    f"No LLM API key: set {settings.api_key_env} (and {BASE_URL_ENV} for a non-OpenAI "
                    "endpoint) in the environment or .env, or use --from_corpus."
                )
            import openai

            client = openai.OpenAI(
                api_key=settings.api_key,
                base_url=settings.base_url,
                max_retries=0,  # retries are ours, so they are bounded and logged the same way everywhere
                timeout=settings.timeout,
            )
        self.settings = settings
        self.client = client
        self.sleep = sleep
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0

    def complete(self, messages: Messages, max_tokens: int | None = None) -> str:
        """One chat completion's text (`max_tokens` default: the settings'); retried on transient errors,
        raises LLMError otherwise."""
        s = self.settings
        options: dict = {"max_tokens": max_tokens if max_tokens is not None else s.max_tokens}
        if s.temperature is not None:
            options["temperature"] = s.temperature
        for attempt in range(s.max_retries + 1):
            with self._lock:
                self.requests += 1
            try:
                response = self.client.chat.completions.create(
                    model=s.model, messages=messages, n=1, **options
                )
                return (response.choices[0].message.content or "").strip()
            except Exception as err:  # noqa: BLE001 - classified just below
                if not _retryable(err):
                    raise LLMError(f"LLM request to {s.base_url or 'OpenAI'} failed: {err}") from err
                if attempt == s.max_retries:
                    raise LLMError(
                        f"LLM request still failing after {s.max_retries + 1} attempts: {err}"
                    ) from err
                delay = _retry_after(err)
                with self._lock:
                    if delay is None:
                        jitter = 0.5 + 0.5 * self._rng.random()
                        delay = min(s.max_backoff, s.backoff * 2**attempt) * jitter
                    self.retries += 1
                self.sleep(delay)
        raise AssertionError("unreachable")
