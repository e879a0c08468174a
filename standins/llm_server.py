"""OpenAI-compatible chat stand-in (`POST /v1/chat/completions`) answering implication
prompts from a universe's ground truth (`ImplicationOracle`).

It reads the target and candidate titles from the scanner's prompt format
(`connectors.llm.protocol.parse_prompt`) and answers in the JSON the extractor asks for.
Fault knobs (`LLMFaults`, mutable at runtime): latency (fixed + uniform jitter), 429 with
`Retry-After`, 200 responses carrying an error body, invalid JSON content, wrong answers.
`stats` records the total request count and the peak number in flight, so a test can
prove bounded parallelism.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from connectors.llm.protocol import parse_prompt
from polyalphascan.http_thread import ThreadedHttpServer
from standins.protocols import ImplicationOracle


@dataclass
class LLMFaults:
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_error_body: float = 0.0
    rate_invalid_json: float = 0.0
    rate_wrong_answer: float = 0.0
    seed: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


@dataclass
class LLMStats:
    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)


class LLMServer(ThreadedHttpServer):
    name = "llm-standin"

    def __init__(self, oracle: ImplicationOracle, host: str = "127.0.0.1", port: int = 0,
                 faults: LLMFaults | None = None) -> None:
        super().__init__(host, port)
        self.oracle = oracle
        self.faults = faults or LLMFaults()
        self.stats = LLMStats()

    def reset_stats(self) -> None:
        self.stats = LLMStats()

    def _completion(self, content: str, model: str, prompt_chars: int) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{self.stats.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(content) // 4,
                      "total_tokens": prompt_chars // 4 + len(content) // 4},
        }

    async def chat(self, request: web.Request) -> web.Response:
        s = self.stats
        s.requests += 1
        s.in_flight += 1
        s.peak_in_flight = max(s.peak_in_flight, s.in_flight)
        try:
            f = self.faults
            body = await request.json()
            delay = f.latency_s + (f.rng.uniform(0, f.latency_jitter_s) if f.latency_jitter_s else 0.0)
            if delay > 0:
                await asyncio.sleep(delay)
            if f.rate_429 and f.rng.random() < f.rate_429:
                s.outcomes["429"] += 1
                return web.json_response(
                    {"error": {"code": 429, "message": "Rate limit exceeded",
                               "metadata": {"error_type": "rate_limit_exceeded"}}},
                    status=429, headers={"Retry-After": f"{f.retry_after_s:g}"})
            if f.rate_error_body and f.rng.random() < f.rate_error_body:
                s.outcomes["error_body"] += 1
                return web.json_response({"error": {"code": 502, "message": "Provider returned error",
                                                    "metadata": {"error_type": "provider_overloaded"}}})
            messages = body.get("messages") or []
            content = str(messages[-1].get("content", "")) if messages else ""
            target, candidates = parse_prompt(content)
            s.targets[target] += 1
            model = str(body.get("model", "standin"))
            if f.rate_invalid_json and f.rng.random() < f.rate_invalid_json:
                s.outcomes["invalid_json"] += 1
                return web.json_response(self._completion("Sure! Here are the implications: {implied_by: [",
                                                          model, len(content)))
            answer = self.oracle.answer_implications(target, candidates)
            if f.rate_wrong_answer and f.rng.random() < f.rate_wrong_answer and candidates:
                s.outcomes["wrong_answer"] += 1
                answer = {"implied_by": [{"title": f.rng.choice(candidates), "explanation": "wrong on purpose",
                                          "counterexample_attempt": "none"}], "implies": []}
            else:
                s.outcomes["ok"] += 1
            return web.json_response(self._completion(orjson.dumps(answer).decode(), model, len(content)))
        finally:
            s.in_flight -= 1

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"
