"""Optional rewriting of template descriptions by an OpenAI-compatible chat endpoint the user names.

The paper had GPT-4 write its descriptions; ``--rewrite-endpoint URL --rewrite-model NAME`` lets any server that
speaks ``POST {URL}/chat/completions`` (OpenAI, vLLM, llama.cpp, Ollama, ...) vary the wording of the template
text. Each answer is cached on disk under the SHA-256 of (model, system prompt, text), so a rerun never asks again
and rebuilds byte-identical files. A rewrite that drops the level word of the image's MOS is not trusted: the
template text is kept (and counted).

One JSON POST per text, so the standard library does it; the OpenAI SDK would be a dependency for an option.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from vcritic.base.files import write_json_atomically
from vcritic.base.limits import MAX_JSON_BYTES, check_input, size_text
from vcritic.errors import VcriticError

KEY_ENV = "VCRITIC_REWRITE_API_KEY"
MAX_REPLY_BYTES = 1 << 20  # the endpoint's answer, read whole: a rewritten sentence and its wrapping are a few KB
SYSTEM_PROMPT = (
    "You rewrite short assessments of an image's visual quality. Keep every judgement and every quality level word "
    "(excellent, good, fair, poor, bad) as given, add no facts, vary the wording and sentence structure. Reply with "
    "the rewritten assessment only."
)


def rewrite_cache_dir() -> Path:
    from vcritic.base.home import vcritic_home

    return vcritic_home() / "rewrites"


@dataclass
class Rewriter:
    endpoint: str
    model: str
    cache_dir: Path = field(default_factory=rewrite_cache_dir)
    workers: int = 8
    timeout: float = 120.0
    asked: int = 0
    cached: int = 0
    kept_template: int = 0

    @property
    def url(self) -> str:
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    def _path(self, text: str) -> Path:
        digest = hashlib.sha256(json.dumps([self.model, SYSTEM_PROMPT, text]).encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def _cached(self, text: str) -> str | None:
        path = self._path(text)
        try:
            check_input(path, MAX_JSON_BYTES, "a cached rewrite")  # what the cache holds is read whole
            output = json.loads(path.read_text(encoding="utf-8"))["output"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError, VcriticError):
            return None  # asked again, and written over
        return output if isinstance(output, str) else None

    def _ask(self, text: str) -> str:
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}],
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(KEY_ENV)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        hint = (
            f"check --rewrite-endpoint, --rewrite-model and ${KEY_ENV}; finished rewrites are cached, a rerun goes on"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = response.read(MAX_REPLY_BYTES + 1)
            if len(reply) > MAX_REPLY_BYTES:
                raise VcriticError(
                    f"rewrite endpoint {self.url} answered more than {size_text(MAX_REPLY_BYTES)}", hint=hint
                )
            answer = json.loads(reply.decode("utf-8"))
        except urllib.error.HTTPError as err:
            detail = err.read(4096).decode("utf-8", "replace")[:200].strip()
            raise VcriticError(f"rewrite endpoint {self.url} answered {err.code}: {detail}", hint=hint) from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise VcriticError(f"cannot reach rewrite endpoint {self.url}: {reason}", hint=hint) from None
        except (ValueError, RecursionError):
            raise VcriticError(f"rewrite endpoint {self.url} did not answer JSON", hint=hint) from None
        try:
            output = str(answer["choices"][0]["message"]["content"]).strip()
        except (KeyError, IndexError, TypeError):
            raise VcriticError(f"rewrite endpoint {self.url} answered without choices[0].message", hint=hint) from None
        path = self._path(text)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(path, {"model": self.model, "input": text, "output": output}, indent=None)
        return output

    def rewrite(self, texts: Sequence[str], required: Sequence[str]) -> list[str]:
        """``texts`` rewritten; where a rewrite lacks its ``required`` word (or is empty) the template stays."""
        unique = list(dict.fromkeys(texts))
        done = {t: out for t in unique if (out := self._cached(t)) is not None}
        self.cached += len(done)
        missing = [t for t in unique if t not in done]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            for text, output in zip(missing, pool.map(self._ask, missing), strict=True):
                done[text] = output
                self.asked += 1
        results = []
        for text, word in zip(texts, required, strict=True):
            output = done[text]
            if output and word.strip().lower() in output.lower():
                results.append(output)
            else:
                self.kept_template += 1
                results.append(text)
        return results
