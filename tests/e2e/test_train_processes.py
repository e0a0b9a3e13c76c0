"""Training as real processes: two processes under ``accelerate launch`` write one output, agree to save when one runs
out of memory and resume together; Ctrl-C saves a checkpoint, says how to resume and exits 130."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image
from support.processes import process_env
from support.training import read_metrics as _metrics

from vcritic.inference.loading import load_critic

# Every test here trains a tiny model: on one torch thread (conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# accelerate's --cpu launcher starts one process; --multi_gpu starts torchrun, and --device cpu makes it gloo.
TWO_PROCESSES = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip


def _train(model, data, out) -> list[str]:
    """``vcritic train`` of stage 1 on the tiny config: the arguments every test here starts with."""
    return ["train", "--stage", "1", "--model", str(model), "--data", str(data), "--output", str(out),
            "--config", "tiny"]  # fmt: skip


@pytest.mark.slow
def test_two_process_accelerate_launch_writes_one_output(tiny_llava, pair_data, tmp_path):
    out = tmp_path / "ddp"
    args = [*_train(tiny_llava, pair_data, out), "--steps", "3", "--batch-size", "2", "--device", "cpu"]
    result = subprocess.run([*TWO_PROCESSES, "-m", "vcritic", *args], env=process_env(), capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr and "4 samples/step" in result.stderr
    assert result.stderr.count("Trained model written to") == 1
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-3"]
    assert (out / "checkpoints" / "step-3" / "random_states_1.pkl").is_file()  # both processes' RNG states
    assert len(_metrics(out)) == 1
    critic = load_critic(out)
    assert 0.0 <= critic.compare(Image.new("RGB", (40, 40)), Image.new("RGB", (40, 40), "white")).p_a_better <= 1.0


OOM_ON_ONE_PROCESS = """
import os, sys

import torch

call = int(sys.argv[1])
count = 0


def hook(module, args):  # process 1 only runs out of memory in a forward pass; process 0 goes on
    global count
    if type(module).__name__.endswith("MultiModalProjector") and os.environ["RANK"] == "1":
        count += 1
        if count == call:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


torch.nn.modules.module.register_module_forward_pre_hook(hook)
from vcritic.cli.app import run

sys.argv = ["vcritic", *sys.argv[2:]]
run()
"""


@pytest.mark.slow
def test_two_processes_agree_to_save_when_one_fails_in_its_forward_pass_and_resume_together(
    tiny_llava, pair_data, tmp_path
):
    out = tmp_path / "ddp"
    script = tmp_path / "oom_on_one_process.py"
    script.write_text(OOM_ON_ONE_PROCESS)
    env = process_env(OMP_NUM_THREADS="1")
    args = _train(tiny_llava, pair_data, out)
    args += ["--steps", "6", "--batch-size", "2", "--save-every", "3", "--device", "cpu"]
    # Forward 5 of process 1 is step 5: process 0 has finished that forward and would wait for it in backward.
    result = subprocess.run([*TWO_PROCESSES, str(script), "5", *args], env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert sorted(errors) == [
        "Error: training failed in step 5 of 6: OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB",
        "Error: training failed in step 5 of 6: process 1 failed (its own message says why)",
    ], result.stderr[-3000:]
    assert result.stderr.count("Hint: step 4 is saved as checkpoints/step-4") == 2
    # step-4 is the failure's checkpoint (step-3 the periodic one), written by both processes together.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-3", "step-4"]
    assert (out / "checkpoints" / "step-4" / "random_states_1.pkl").is_file()

    result = subprocess.run([*TWO_PROCESSES, "-m", "vcritic", *args, "--resume"], env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("Trained model written to") == 1 and _metrics(out)[-1]["step"] == 6


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_says_how_to_resume_and_exits_130(tiny_llava, pair_data, tmp_path):
    import signal
    import time

    out = tmp_path / "out"
    command = [sys.executable, "-m", "vcritic", *_train(tiny_llava, pair_data, out), "--steps", "100000"]
    process = subprocess.Popen([*command, "--save-every", "0"], env=process_env(OMP_NUM_THREADS="1"),
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted at step" in err and "--resume" in err
    checkpoints = [p.name for p in (out / "checkpoints").iterdir()]
    assert len(checkpoints) == 1 and checkpoints[0].startswith("step-")
