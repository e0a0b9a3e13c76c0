"""Data-parallel scoring under ``accelerate launch -m vcritic score ...``: every process scores its share, the
first one writes the one output.

- Only process 0 opens the output (lock, ``--resume``) and decides which inputs are left; it sends that list to
  the others (or ``None`` when it failed before scoring, so they stop instead of waiting).
- Process r scores the interleaved shard ``todo[r::n]``, on its own device (``cuda:LOCAL_RANK`` on GPUs).
- Rows are gathered in rounds of :data:`ROUND` rows per process. Round k holds positions ``k*ROUND ..`` of every
  shard, i.e. one contiguous block of the input list, so process 0 writes rows in input order as the rounds
  finish: the same streaming, crash-safe CSV as a single process, each image exactly once.

Multi-node runs are accelerate's own launcher (``accelerate launch --num_machines M --machine_rank R
--main_process_ip ...``); nothing here depends on the number of machines, but the inputs and the output folder
must be visible at the same paths on every machine.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from vcritic.errors import VcriticError

ROUND = 8  # rows per process per gather: small enough to stream, large enough that gathers cost nothing


def launched_processes() -> int:
    """How many processes the launcher (accelerate / torchrun) started; 1 when run directly."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def is_secondary_process() -> bool:
    """True in every process but the first of an ``accelerate launch`` run: those stay quiet on the terminal."""
    try:
        return launched_processes() > 1 and int(os.environ.get("RANK", "0")) != 0
    except ValueError:
        return False


def check_launch_device(requested: str | None) -> None:
    """Under ``accelerate launch`` each process takes its own GPU (``cuda:LOCAL_RANK``), so one named device
    (``cuda:N``, ``mps``) cannot be honoured: refuse it rather than ignore it. ``cpu`` and ``cuda`` are fine."""
    processes = launched_processes()
    if processes > 1 and requested not in (None, "auto", "cuda", "cpu"):
        raise VcriticError(
            f"--device {requested} cannot be honoured under accelerate launch: each of the {processes} processes "
            "takes its own GPU",
            hint="leave --device out and choose the GPUs with CUDA_VISIBLE_DEVICES=1,2 (or accelerate launch "
            "--gpu_ids 1,2)",
        )


class Team:
    """The processes of one data-parallel run (accelerate's ``PartialState``), seen from one of them."""

    def __init__(self, device: str | None):
        from accelerate import PartialState

        self.state = PartialState(cpu=device == "cpu")
        self.rank = self.state.process_index
        self.size = self.state.num_processes
        self.is_main = self.state.is_main_process

    def device(self, requested: str | None) -> str:
        """This process's device: its own GPU unless the user named the CPU (or one GPU for all, which is refused)."""
        if requested is None or requested in ("auto", "cuda"):
            return str(self.state.device)
        if requested.startswith("cuda:"):
            raise VcriticError(
                f"--device {requested} would put all {self.size} processes on one GPU",
                hint="leave --device out: under accelerate launch each process takes its own GPU",
            )
        return requested

    def share(self, value: Any) -> Any:
        """``value`` from process 0, on every process."""
        from accelerate.utils import broadcast_object_list

        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def shard(self, items: Sequence[Any]) -> list[Any]:
        return list(items[self.rank :: self.size])

    def gather_in_order(self, rows: Iterable[Any], total: int) -> Iterator[Any]:
        """This process's rows (of its :meth:`shard` of ``total`` inputs) merged with everyone's, in input order;
        yields on process 0 only (the others take part in each gather and yield nothing)."""
        from accelerate.utils import gather_object

        mine = iter(rows)
        longest = -(-total // self.size)
        for start in range(0, longest, ROUND):
            batch = [(local * self.size + self.rank, row)
                     for local, row in enumerate(itertools.islice(mine, ROUND), start=start)]  # fmt: skip
            everyone = gather_object(batch)
            if self.is_main:
                for _, row in sorted(everyone, key=lambda pair: pair[0]):
                    yield row

    def wait(self) -> None:
        self.state.wait_for_everyone()


def team_for(device: str | None, device_map: str | None = None) -> Team | None:
    """The :class:`Team` when launched with several processes, else None (no accelerate import)."""
    if launched_processes() <= 1:
        return None
    if device_map is not None:
        raise VcriticError(
            "--device-map spreads one model over all GPUs; it does not combine with several processes",
            hint="run it without accelerate launch, or leave --device-map out",
        )
    return Team(device)


def single_process_only(command: str) -> None:
    """Refuse a command that does not split its work, when launched as several processes (each would redo it all
    and race for the same output)."""
    if launched_processes() > 1:
        hint = {
            "bench": "score the images data-parallel (accelerate launch -m vcritic score ... -o scores.csv), then "
            "vcritic bench NAME --predictions scores.csv",
        }.get(command, "run it as one process, without accelerate launch")
        raise VcriticError(f"vcritic {command} does not run data-parallel yet; only score does", hint=hint)
