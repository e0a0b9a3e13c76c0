"""``vcritic serve`` without a server: the batcher's out-of-memory rule, and what stops the service before it serves."""

from __future__ import annotations

import asyncio
import socket

import pytest

pytest.importorskip("fastapi")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_out_of_memory_halves_the_batch_and_keeps_serving():
    """CUDA OOM cannot happen on a CPU: the batch function raises torch's own OutOfMemoryError above two items, as
    the CUDA allocator would, and a ValueError for one poisoned item."""
    import torch

    from vcritic.engine.batches import TOO_LARGE
    from vcritic.serve.batcher import Batcher, ItemError, ModelThread

    sizes = []

    def run_batch(key, payloads):
        if len(payloads) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        if "poison" in payloads:
            raise ValueError("bad item")
        if "huge" in payloads:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        sizes.append(len(payloads))
        return [f"{key}:{p}" for p in payloads]

    async def scenario():
        batcher = Batcher(run_batch, ModelThread(), max_batch=8, max_wait=0.05, device=lambda: torch.device("cpu"))
        task = asyncio.create_task(batcher.run())
        first = await asyncio.gather(*batcher.submit("k", [str(i) for i in range(8)]))
        mixed = await asyncio.gather(*batcher.submit("k", ["a", "poison", "b"]), return_exceptions=True)
        later = await asyncio.gather(*batcher.submit("k", ["x", "huge"]), return_exceptions=True)
        task.cancel()
        return batcher.plan, first, mixed, later

    plan, first, mixed, later = asyncio.run(scenario())
    assert first == [f"k:{i}" for i in range(8)] and sizes[:4] == [2, 2, 2, 2]  # 8 -> 4 -> 2
    assert plan.current == 1 and plan.halvings == 3  # then [x, huge] -> 1, and huge alone fails
    assert mixed[0] == "k:a" and mixed[2] == "k:b" and isinstance(mixed[1], ItemError)
    assert later[0] == "k:x" and isinstance(later[1], ItemError) and str(later[1]) == TOO_LARGE


def test_usage_errors_exit_2_before_anything_starts(capsys):
    from vcritic.cli.app import main

    assert main(["serve", "-m", "x", "--max-images", "10", "--max-queue", "5"]) == 2
    assert "--max-images 10 is over --max-queue 5" in capsys.readouterr().err
    assert main(["serve", "-m", "x", "--api-key", " "]) == 2
    assert "--api-key is empty" in capsys.readouterr().err


def test_a_model_that_cannot_load_stops_the_service_with_its_error(tmp_path, capsys):
    from vcritic.cli.app import main

    code = main(["serve", "-m", str(tmp_path / "missing"), "--port", str(_free_port())])
    err = capsys.readouterr().err
    assert code == 1 and "no such checkpoint directory" in err and "Traceback" not in err
