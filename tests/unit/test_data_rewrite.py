"""Rewriting descriptions through an OpenAI-compatible endpoint: a tiny fake server on 127.0.0.1, never the network."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.dataset_fixtures import build_all

from vcritic.cli.app import main
from vcritic.data.build import BuildOptions, build
from vcritic.data.dialogues import read_dialogues
from vcritic.data.rewrite import KEY_ENV
from vcritic.errors import VcriticError


class FakeChat:
    """Answers /v1/chat/completions with the user's text reworded; drops the level word where told to."""

    def __init__(self, status: int = 200):
        self.requests: list[dict] = []
        self.status = status
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                text = body["messages"][-1]["content"]
                reply = "Nothing to see." if "bad" in text else f"In other words: {text}"
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat():
    server = FakeChat()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iqa")
    build_all(folder)
    return folder


def test_descriptions_are_rewritten_once_and_cached(tmp_path, root, chat, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    options = dict(stage=2, root=root, rewrite_endpoint=chat.url, rewrite_model="tiny-chat")
    build(BuildOptions(out=tmp_path / "a", **options))
    train = list(read_dialogues(tmp_path / "a" / "dialogues.jsonl"))
    described = [d for d in train if d.task == "description"]
    rewritten = [d for d in described if d.answer.startswith("In other words: ")]
    assert rewritten and all(d.answer == "In other words: " + d.meta["template"] for d in rewritten)
    kept = [d for d in described if d not in rewritten]  # the fake dropped the level word of "bad" images
    assert kept and all(" bad" in d.answer and "template" not in d.meta for d in kept)
    val = [d for d in read_dialogues(tmp_path / "a" / "val.jsonl") if d.task == "description"]
    asked = len(chat.requests)
    assert asked == len({d.meta.get("template", d.answer) for d in described + val})  # one request per text
    first = chat.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["model"] == "tiny-chat"
    assert first["auth"] == "Bearer sk-test" and first["temperature"] == 0

    build(BuildOptions(out=tmp_path / "b", **options))
    assert len(chat.requests) == asked  # all from the cache
    for name in ("dialogues.jsonl", "val.jsonl", "data.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_endpoint_errors_are_one_line(tmp_path, root, capsys):
    failing = FakeChat(status=500)
    try:
        args = ["data", "build", "--stage", "2", "--root", str(root), "--rewrite-model", "m"]
        assert main([*args, "--out", str(tmp_path / "a"), "--rewrite-endpoint", failing.url]) == 1
        err = capsys.readouterr().err
        assert "answered 500" in err and "Traceback" not in err
    finally:
        failing.stop()
    closed = failing.url  # nothing listens there any more
    with pytest.raises(VcriticError, match="cannot reach rewrite endpoint"):
        build(BuildOptions(stage=2, out=tmp_path / "b", root=root, rewrite_endpoint=closed, rewrite_model="m"))
    with pytest.raises(VcriticError, match="needs --rewrite-model"):
        build(BuildOptions(stage=2, out=tmp_path / "c", root=root, rewrite_endpoint=closed))


@pytest.mark.parametrize("damaged", [b"[" * 100_000, b'{"output": 5}', b"\xff\xfe"])
def test_a_damaged_cache_entry_is_asked_again_and_written_over(tmp_path, chat, damaged):
    from vcritic.data.rewrite import Rewriter

    rewriter = Rewriter(chat.url, "tiny-chat", cache_dir=tmp_path)
    entry = rewriter._path("a good photo")
    entry.parent.mkdir(parents=True)
    entry.write_bytes(damaged)
    assert rewriter.rewrite(["a good photo"], ["good"]) == ["In other words: a good photo"]
    assert rewriter.asked == 1 and json.loads(entry.read_text())["output"] == "In other words: a good photo"


def test_an_endpoint_answer_over_its_bound_is_one_line_not_read_whole(tmp_path, chat, monkeypatch):
    from vcritic.data import rewrite

    monkeypatch.setattr(rewrite, "MAX_REPLY_BYTES", 50)  # the fake's answer is about 100 bytes
    with pytest.raises(VcriticError, match=r"rewrite endpoint http://127\.0\.0\.1:\d+/v1/chat/completions answered "
                                           r"more than 50 bytes"):  # fmt: skip
        rewrite.Rewriter(chat.url, "tiny-chat", cache_dir=tmp_path).rewrite(["a good photo"], ["good"])
    assert not any(tmp_path.rglob("*.json"))  # nothing cached
