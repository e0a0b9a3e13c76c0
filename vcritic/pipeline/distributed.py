"""Data-parallel work under ``accelerate launch -m vcritic score|compare --pairs|bench ...``: every process does its
share of each job, the first one writes the outputs.

- Only process 0 reads the command's inputs, opens the outputs (lock, ``--resume``) and decides what is left to do.
  It hands out the work as jobs (:meth:`Team.load`, :meth:`Team.score_paths`, :meth:`Team.compare_paths`); the
  other processes do nothing but :meth:`Team.follow` them, until process 0 says stop (``None``): also when it
  refused to start or failed between jobs, so they never wait for work that will not come.
- Process r does the interleaved shard ``items[r::n]`` of each job, on its own device (``cuda:LOCAL_RANK`` on
  GPUs).
- Rows are gathered in rounds of :data:`ROUND` rows per process. Round k holds positions ``k*ROUND ..`` of every
  shard, i.e. one contiguous block of the input list, so process 0 writes rows in input order as the rounds
  finish: the same streaming, crash-safe CSV as a single process, each input exactly once.

Multi-node runs are accelerate's own launcher (``accelerate launch --num_machines M --machine_rank R
--main_process_ip ...``); nothing here depends on the number of machines, but the inputs and the output folder
must be visible at the same paths on every machine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from vcritic.errors import VcriticError

ROUND = 8  # rows per process per gather: small enough to stream, large enough that gathers cost nothing
LOAD = "load"  # the job that has every process load its model (at the same time as process 0)


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
        self.busy = False  # process 0 has handed out a job whose rows are not all gathered yet
        self.lost = False  # a collective call failed: another process is gone, nothing more to say to it

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
        self._together(lambda: broadcast_object_list(box, from_process=0))
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
            everyone = self._together(lambda: gather_object(batch))  # noqa: B023 (called at once)
            if self.is_main:
                for _, row in sorted(everyone, key=lambda pair: pair[0]):
                    yield row

    def _together(self, collective: Callable[[], Any]) -> Any:
        """Run a collective call; when another process has died (its connection closed, or the call timed out),
        say so in one line instead of the backend's traceback: that process's own error is the one that matters."""
        try:
            return collective()
        except RuntimeError as err:
            self.lost = True
            reason = (str(err).strip().splitlines() or ["no reason given"])[0]
            raise VcriticError(
                f"lost contact with the other processes of this run ({reason})",
                hint="the other process's own error says why it stopped; rows already written are kept: run the "
                "same command with --resume",
            ) from None

    def wait(self) -> None:
        self.state.wait_for_everyone()

    # -- process 0 hands out the work ----------------------------------------------------------------------------
    def load(self, load: Callable[[], Any]) -> Any:
        """Process 0: every process loads its model now, at the same time as this one does with ``load()``."""
        self.share(LOAD)
        return load()

    def score_paths(self, critic, paths: Sequence[Any], *, batch_size=8, **options) -> Iterator[Any]:
        """Process 0: :func:`vcritic.pipeline.scoring.score_paths` with every process scoring its shard; the rows in
        input
        order. ``batch_size`` may be this process's :class:`~vcritic.engine.batches.BatchPlan`; the others get its
        size."""
        return self._job("score", critic, [os.fspath(p) for p in paths], batch_size, options)

    def compare_paths(self, critic, pairs: Sequence[tuple[Any, Any]], *, batch_size=8, **options) -> Iterator[Any]:
        """Process 0: :func:`vcritic.pipeline.scoring.compare_paths` split the same way."""
        return self._job("compare", critic, [(os.fspath(a), os.fspath(b)) for a, b in pairs], batch_size, options)

    def _job(self, kind: str, critic, items: list, batch_size, options: dict) -> Iterator[Any]:
        if not items:
            return
        from vcritic.engine.batches import BatchPlan

        self.busy = True
        self.share((kind, items, {**options, "batch_size": BatchPlan.of(batch_size).requested}))
        rows = _job_function(kind)(critic, self.shard(items), batch_size=batch_size, **options)
        yield from self.gather_in_order(rows, len(items))
        self.busy = False

    def stop(self) -> None:
        """Process 0, at its end: the others stop following. Not in the middle of a job (process 0 failed while
        writing rows): the others are in a gather that would take the message for rows; process 0's error exit
        makes the launcher stop them."""
        if not (self.busy or self.lost):
            self.share(None)
            self.state.destroy_process_group()  # closed in order, not by the interpreter's exit (NCCL warns)

    # -- the other processes follow ------------------------------------------------------------------------------
    def follow(self, load: Callable[[], Any]) -> None:
        """Every process but 0: load the model when process 0 does, do each job it hands out on this process's
        shard, until it says stop."""
        critic = None
        while (job := self.share(None)) is not None:
            if job == LOAD:
                critic = load()
                continue
            kind, items, options = job
            rows = _job_function(kind)(critic, self.shard(items), **options)
            for _ in self.gather_in_order(rows, len(items)):
                pass
        self.state.destroy_process_group()


def _job_function(kind: str):
    from vcritic.pipeline.scoring import compare_paths, score_paths

    return {"score": score_paths, "compare": compare_paths}[kind]


@contextlib.contextmanager
def lead(team: Team | None) -> Iterator[None]:
    """Process 0's part of a command: however it ends, the other processes stop following (see :meth:`Team.stop`)."""
    try:
        yield
    finally:
        if team is not None:
            team.stop()


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


def single_process_only(command: str, hint: str | None = None) -> None:
    """Refuse a command that does not split its work, when launched as several processes (each would redo it all
    and race for the same output)."""
    if launched_processes() > 1:
        raise VcriticError(
            f"vcritic {command} does not run data-parallel; score, compare --pairs and bench do",
            hint=hint or "run it as one process, without accelerate launch",
        )
