"""``vcritic chat`` end to end on a tiny model: --ask and --json give the API's answers, so does stdin; on a terminal
(a real process) Ctrl-D ends with 0 and Ctrl-C with 130."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.processes import process_env

from vcritic.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ("Is this photo sharp?", "And how are the colours?", "What would make it better?")


@pytest.fixture(scope="module")
def cat_png(tmp_path_factory, sample_images):
    path = tmp_path_factory.mktemp("chat") / "cat.png"
    sample_images["chelsea"].save(path)
    return path


@pytest.mark.slow
def test_ask_json_and_stdin_give_the_api_s_answers(runner, critics, tiny_llava, cat_png):
    from vcritic.base.images import load_image

    conversation = critics("llava").chat(load_image(cat_png), max_new_tokens=6)
    answers = [conversation.ask(q) for q in QUESTIONS[:2]]
    score = conversation.score()
    base = ["chat", str(cat_png), "-m", str(tiny_llava), "--max-new-tokens", "6"]

    asked = runner.invoke(app, [*base, "--ask", QUESTIONS[0], "-a", "/score", "--ask", QUESTIONS[1], "--json"])
    assert asked.exit_code == 0, asked.output
    transcript = json.loads(asked.stdout)
    assert transcript["image"] == str(cat_png) and transcript["model"] == str(tiny_llava)
    assert transcript["turns"] == [{"question": q, "answer": a} for q, a in zip(QUESTIONS, answers, strict=False)]
    assert transcript["score"]["mos"] == pytest.approx(score.mos, abs=1e-3)
    assert set(transcript["score"]["attributes"]) == set(score.attributes)

    piped = runner.invoke(app, base, input=f"{QUESTIONS[0]}\n\n/score\n{QUESTIONS[1]}\n/quit\n{QUESTIONS[2]}\n")
    assert piped.exit_code == 0, piped.output
    lines = piped.stdout.splitlines()
    assert [line.strip() for line in (lines[0], lines[2])] == answers and len(lines) == 3  # stopped at /quit
    assert lines[1].startswith(f"MOS {score.mos:.1f}/100  brightness ")
    assert f"> {QUESTIONS[1]}" in piped.stderr and QUESTIONS[2] not in piped.stderr

    reset = runner.invoke(app, [*base, "--json"], input=f"{QUESTIONS[0]}\n/reset\n{QUESTIONS[0]}\n/what\n")
    assert reset.exit_code == 0, reset.output
    turns = json.loads(reset.stdout)["turns"]
    assert [t["answer"] for t in turns] == [answers[0], answers[0]]  # the history was forgotten
    assert "Unknown command /what; commands: /score, /reset, /quit." in reset.stderr


@pytest.mark.slow
def test_on_a_terminal_ctrl_d_ends_with_0_and_ctrl_c_with_130(tiny_llava, cat_png):
    """The interactive loop on a real pseudo-terminal: a typed question is answered; Ctrl-D and Ctrl-C (sent as the
    terminal's own characters) end it cleanly; with --json the answered turns still reach stdout."""
    base = ["chat", cat_png, "-m", tiny_llava, "--max-new-tokens", "4"]
    for key, code, extra in ((b"\x04", 0, []), (b"\x03", 130, []), (b"\x03", 130, ["--json"])):
        process, keyboard = _on_terminal([*base, *extra])
        try:
            assert b"Ctrl-D ends." in _read_until(process.stderr, b"> ")
            os.write(keyboard, QUESTIONS[0].encode() + b"\n")
            if extra:  # the answer is shown on stderr, the transcript kept for stdout
                _read_until(process.stderr, b"> ")
            else:
                assert _read_until(process.stdout, b"\n").strip()  # the answer, streamed
                _read_until(process.stderr, b"> ")
            os.write(keyboard, key)
            assert process.wait(timeout=60) == code
            assert b"Traceback" not in process.stderr.read()
            if extra:
                turns = json.loads(process.stdout.read())["turns"]
                assert [turn["question"] for turn in turns] == [QUESTIONS[0]] and turns[0]["answer"]
        finally:
            process.kill()
            os.close(keyboard)


def _on_terminal(args):
    import fcntl
    import pty
    import termios

    keyboard, terminal = pty.openpty()

    def attach():  # the terminal becomes the process's controlling one, so Ctrl-C is a SIGINT as in a shell
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = process_env()
    process = subprocess.Popen([sys.executable, "-m", "vcritic", *map(str, args)], stdin=terminal,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=attach)  # fmt: skip
    os.close(terminal)
    return process, keyboard


def _read_until(stream, marker: bytes, timeout: float = 120) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {marker!r}; got {seen!r}")
        if select.select([stream], [], [], 0.5)[0]:
            seen += os.read(stream.fileno(), 4096)
    return seen
