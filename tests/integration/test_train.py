"""Training runs on tiny random models: learning, saving and loading back, resume, the stage chain, the CLI (launched
processes: tests/e2e/test_train_processes.py)."""

from __future__ import annotations

import json
import re
import shutil
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.families import HAS_TORCHVISION, family_params
from support.training import WIRING, write_pairs
from support.training import read_metrics as _metrics
from support.training import wiring_config as _config

from vcritic.cli.app import main
from vcritic.data.dialogues import Dialogue, write_dialogues
from vcritic.errors import VcriticError
from vcritic.inference.critic import Critic
from vcritic.inference.loading import load_critic
from vcritic.readout.prompts import QUALITY
from vcritic.training.config import load_config
from vcritic.training.run import train
from vcritic.training.stopping import TrainingFailed, TrainingInterrupted

# Every test here trains a tiny model: on one torch thread (conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _in_memory(trained) -> Critic:
    """The model a training run returns, as a scoring Critic (to compare with what load_critic reads back)."""
    trained.model.eval()
    return Critic(
        trained.model,
        trained.processor,
        family=trained.family,
        device=torch.device("cpu"),
        dtype=torch.float32,
        source="x",
    )


def _state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def test_training_learns_changes_only_trainable_weights_and_loads_back_identically(tiny_llava, pair_data, tmp_path):
    out = tmp_path / "out"
    trained = train(model=str(tiny_llava), data=pair_data, output=out, stage=1, config=_config(steps=24))

    losses = [r["loss"] for r in _metrics(out) if "loss" in r]
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4

    manifest = json.loads((out / "vcritic.json").read_text())
    assert manifest["base_model"] == str(tiny_llava.resolve())
    assert (manifest["stage"], manifest["adapters"], manifest["trained_on"]) == (1, ["."], ["synthetic"])
    assert manifest["config"]["steps"] == 24 and (out / "adapter_model.safetensors").is_file()

    critic = load_critic(out)  # no extra flag: vcritic.json says what to load
    before = load_critic(tiny_llava).model.state_dict()
    after = critic.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "nothing trained"
    assert not any("vision_tower" in k for k in changed)  # frozen
    assert any("multi_modal_projector" in k for k in changed) and "lm_head.weight" in changed
    assert any("q_proj" in k for k in changed)  # LoRA merged into the language model
    assert not any("embed_tokens" in k for k in changed)

    in_memory = _in_memory(trained)
    images = [Image.open(p) for p in sorted(pair_data.glob("*.png"))[:6]]
    with torch.no_grad():
        expected = [s.mos for s in in_memory.score(images)]
    assert [s.mos for s in critic.score(images)] == pytest.approx(expected, abs=1e-4)
    pairs = list(zip(images[::2], images[1::2], strict=True))
    expected_p = [c.p_a_better for c in in_memory.compare(pairs)]
    assert [c.p_a_better for c in critic.compare(pairs)] == pytest.approx(expected_p, abs=1e-5)


def test_interrupt_then_resume_gives_the_weights_of_one_run(tiny_llava, pair_data, tmp_path):
    config = _config(steps=8, save_every=2, lora_dropout=0.1, grad_accum=2, batch_size=4)  # dropout: RNG restored
    whole = tmp_path / "whole"
    train(model=str(tiny_llava), data=pair_data, output=whole, stage=1, config=config)

    def interrupt_at_step_5(record):
        if record["event"] == "step" and record["step"] == 5:
            raise KeyboardInterrupt

    split = tmp_path / "split"
    with pytest.raises(TrainingInterrupted) as err:
        train(model=str(tiny_llava), data=pair_data, output=split, stage=1, config=config, on_event=interrupt_at_step_5)
    assert err.value.exit_code == 130 and "--resume" in err.value.hint
    assert sorted(p.name for p in (split / "checkpoints").iterdir()) == ["step-4", "step-5"]  # saved on Ctrl-C
    assert not (split / "vcritic.json").exists()
    with pytest.raises(VcriticError, match="already exists"):
        train(model=str(tiny_llava), data=pair_data, output=split, stage=1, config=config)
    # What a kill while saving leaves behind: a temporary folder, and a folder without its position file.
    (split / "checkpoints" / ".tmp-step-6").mkdir()
    (split / "checkpoints" / "step-7").mkdir()
    (split / "checkpoints" / "step-7" / "model.safetensors").write_bytes(b"partial")
    train(model=str(tiny_llava), data=pair_data, output=split, stage=1, config=config, resume=True)

    a, b = _state(whole / "adapter_model.safetensors"), _state(split / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    steps, curve = zip(*[(r["step"], r["loss"]) for r in _metrics(whole)], strict=True)
    assert [r["step"] for r in _metrics(split)] == list(steps) == list(range(1, 9))
    assert [r["loss"] for r in _metrics(split)] == pytest.approx(curve, abs=1e-6)


@contextmanager
def _at_forward(call: int, action):
    """Run ``action`` at the ``call``-th forward pass of any model (counted at its projector, which runs once per
    forward): a real failure raised from inside the forward pass, as CUDA running out of memory would."""
    count = 0

    def hook(module, args):
        nonlocal count
        if type(module).__name__.endswith("MultiModalProjector"):
            count += 1
            if count == call:
                action()

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def _at_optimizer_step(call: int, error: BaseException):
    """Raise ``error`` right after the ``call``-th optimizer step has changed the weights."""
    count = 0

    def hook(optimizer, args, kwargs):
        nonlocal count
        count += 1
        if count == call:
            raise error

    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def _files_limited_to(size: int):
    """While active, no file of this process can grow past ``size`` bytes: writes fail with EFBIG (what a full disk
    does to a checkpoint being written, for real, without filling a disk)."""
    import resource
    import signal

    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of the process dying
    try:
        yield lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, before[1]))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)
        signal.signal(signal.SIGXFSZ, handler)


@pytest.fixture(scope="module")
def uninterrupted(tiny_models, sample_images, tmp_path_factory):
    """Data and an uninterrupted run of FAILING_CONFIG, shared by the failure tests."""
    root = tmp_path_factory.mktemp("failures")
    data = write_pairs(root / "data", [sample_images[k] for k in ("astronaut", "chelsea", "coffee", "rocket")])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(model=str(tiny_models("llava")), data=data, output=root / "whole", stage=1, config=FAILING_CONFIG())
    finally:
        torch.set_num_threads(threads)
    return data, root / "whole"


def FAILING_CONFIG():  # noqa: N802 - a constant, built late (load_config reads the presets)
    # Dropout and two micro-batches per step: a checkpoint taken mid-step with the wrong RNG state or micro-batch
    # count would not resume exactly.
    return _config(steps=8, save_every=2, lora_dropout=0.1, grad_accum=2, batch_size=4)


def _raise(error: BaseException):
    def action():
        raise error

    return action


@pytest.mark.parametrize("failure", ["forward", "optimizer", "save", "end"])
def test_a_failure_saves_the_last_completed_step_and_resume_gives_the_weights_of_one_run(
    tiny_llava, uninterrupted, tmp_path, failure
):
    """A run failing mid-way keeps its work: the last completed step is saved (unless the update was half applied,
    or saving fails too: then the newest checkpoint is intact), and --resume ends where one run ends."""
    data, whole = uninterrupted
    out = tmp_path / "split"
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total)")
    run = dict(model=str(tiny_llava), data=data, output=out, stage=1, config=FAILING_CONFIG())
    with ExitStack() as stack:
        if failure == "forward":  # the second micro-batch of step 6, after the first one drew dropout masks
            stack.enter_context(_at_forward(12, _raise(oom)))
        elif failure == "optimizer":  # step 6's update applied, the step not yet counted
            stack.enter_context(_at_optimizer_step(6, RuntimeError("injected in the optimizer step")))
        elif failure == "save":
            limit = stack.enter_context(_files_limited_to(1024))

            def disk_full_then_oom():
                limit()
                raise oom

            stack.enter_context(_at_forward(12, disk_full_then_oom))
        else:  # the disk fills up once the last step is done: the final checkpoint cannot be written
            limit = stack.enter_context(_files_limited_to(1024))
            run["on_event"] = lambda record: limit() if record.get("step") == 8 and record["event"] == "step" else None
        with pytest.raises(TrainingFailed) as err:
            train(**run)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    if failure == "forward":
        assert err.value.message == f"training failed in step 6 of 8: OutOfMemoryError: {oom}"
        assert err.value.hint.startswith("step 5 is saved as checkpoints/step-5; fix the cause, then run the same")
        assert names == ["step-4", "step-5"]
    elif failure == "optimizer":
        assert err.value.message == (
            "training failed in step 6 of 8: RuntimeError: injected in the optimizer step; step 6's update was "
            "half applied, so it was not saved"
        )
        assert err.value.hint.startswith("the newest checkpoint, step-4, is intact")
        assert names == ["step-2", "step-4"]
    elif failure == "end":
        assert err.value.message.startswith(f"training did all 8 steps, but writing the result to {out} failed: ")
        assert err.value.hint.startswith("fix the cause, then run the same command plus --resume (output: ")
        assert err.value.hint.endswith("it continues from step-6")
        assert names == ["step-4", "step-6"]
        del run["on_event"]
    else:
        assert err.value.message.startswith(
            "training failed in step 6 of 8: OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB "
            "(GPU 0; 79.1 GiB total); saving a checkpoint failed too ("
        )
        assert err.value.hint.startswith("the newest checkpoint, step-4, is intact")
        assert names == ["step-2", "step-4"]  # no half-written step-5, no temporary folder left taking space
    assert "--resume" in err.value.hint and isinstance(err.value.__cause__, Exception)

    train(**run, resume=True)
    a, b = _state(whole / "adapter_model.safetensors"), _state(out / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert [r["loss"] for r in _metrics(out)] == pytest.approx([r["loss"] for r in _metrics(whole)], abs=1e-6)


def test_cli_an_image_corrupted_mid_run_saves_the_last_step_and_says_how_to_resume(
    tiny_llava, pair_data, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["train", "--stage", "1", "--model", str(tiny_llava), "--data", str(pair_data), "--output", str(out)]
    args += ["--config", "tiny", "--steps", "8", "--batch-size", "4", "--save-every", "100"]
    image = pair_data / "3-bad.png"
    good = image.read_bytes()
    # Every image is read again in the second epoch (4 batches each): the bad one is found there at the latest.
    with _at_forward(2, lambda: image.write_bytes(b"not a png")):
        assert main(args) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(("Error:", "Hint:"))]
    assert len(lines) == 2 and "Traceback" not in err, err
    failed_in = int(re.search(r"Error: training failed in step (\d+) of 8: ", lines[0]).group(1))
    assert str(image) in lines[0] and "not an image" in lines[0]
    done = failed_in - 1
    assert lines[1] == (
        f"Hint: step {done} is saved as checkpoints/step-{done}; fix the cause, then run the same command plus "
        f"--resume (output: {out})"
    )
    assert [p.name for p in (out / "checkpoints").iterdir()] == [f"step-{done}"]
    image.write_bytes(good)
    assert main([*args, "--resume"]) == 0
    assert "Training stage 1" in capsys.readouterr().err and (out / "vcritic.json").is_file()
    assert _metrics(out)[-1]["step"] == 8


def test_resume_matches_a_local_model_by_folder_and_a_run_without_checkpoint_points_to_overwrite(
    tiny_llava, pair_data, tmp_path, monkeypatch
):
    monkeypatch.chdir(tiny_llava.parent)
    out = tmp_path / "out"
    train(model=tiny_llava.name, data=pair_data, output=out, stage=1, config=_config(steps=2, save_every=1))
    # The same folder by another spelling (or from another working folder) is the same model: was refused.
    train(model=str(tiny_llava), data=pair_data, output=out, stage=1, config=_config(steps=3), resume=True)
    assert [r["step"] for r in _metrics(out)] == [1, 2, 3]

    def killed(record):  # a run that dies before its first checkpoint (kill -9, OOM) leaves only run.json
        if record["event"] == "start":
            raise RuntimeError("killed")

    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        train(model=str(tiny_llava), data=pair_data, output=fresh, stage=1, config=_config(), on_event=killed)
    # Each refusal used to send the user to the other (--resume, then "start without --resume").
    with pytest.raises(VcriticError, match="already exists") as err:
        train(model=str(tiny_llava), data=pair_data, output=fresh, stage=1, config=_config())
    assert "--overwrite" in err.value.hint and "--resume" not in err.value.hint
    with pytest.raises(VcriticError, match="no checkpoint") as err:
        train(model=str(tiny_llava), data=pair_data, output=fresh, stage=1, config=_config(), resume=True)
    assert "--overwrite" in err.value.hint


def test_output_that_is_the_model_or_holds_the_data_is_refused_before_it_is_emptied(tiny_llava, pair_data, tmp_path):
    stage1 = tmp_path / "stage1"
    train(model=str(tiny_llava), data=pair_data, output=stage1, stage=1, config=_config(steps=1))
    before = (stage1 / "adapter_model.safetensors").read_bytes()
    # Was accepted: the folder was emptied, and previous/1 became a copy of the new stage's own adapter.
    with pytest.raises(VcriticError, match="would replace --model"):
        train(model=str(stage1), data=pair_data, output=stage1, stage=2, config=_config(steps=1), overwrite=True)
    assert (stage1 / "adapter_model.safetensors").read_bytes() == before
    with pytest.raises(VcriticError, match="would replace --data"):
        train(model=str(tiny_llava), data=pair_data, output=pair_data.parent, stage=1, config=_config(steps=1))
    assert (pair_data / "dialogues.jsonl").is_file()


def test_a_second_run_writing_the_same_output_is_refused(tiny_llava, pair_data, tmp_path):
    import fcntl
    import os

    out = tmp_path / "out"
    train(model=str(tiny_llava), data=pair_data, output=out, stage=1, config=_config(steps=1, save_every=1))
    before = sorted(p.name for p in out.iterdir())
    fd = os.open(out, os.O_RDONLY)  # what a run in progress holds
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Both runs used to go on in the same folder (interleaved checkpoints, metrics, adapters).
        for resume, overwrite in ((True, False), (False, True)):
            with pytest.raises(VcriticError, match=r"is in use by another vcritic run \(pid \d+\)"):
                train(model=str(tiny_llava), data=pair_data, output=out, stage=1, config=_config(steps=2),
                      resume=resume, overwrite=overwrite)  # fmt: skip
    finally:
        os.close(fd)
    assert sorted(p.name for p in out.iterdir()) == before
    train(model=str(tiny_llava), data=pair_data, output=out, stage=1, config=_config(steps=2), resume=True)
    # A run that fails before training leaves no empty folder behind.
    with pytest.raises(VcriticError, match="no such folder"):
        train(model=str(tiny_llava), data=tmp_path / "nope", output=tmp_path / "new", stage=1, config=_config())
    assert not (tmp_path / "new").exists()


def test_missing_images_are_refused_before_training_and_an_unreadable_one_is_named(tiny_llava, pair_data, tmp_path):
    (pair_data / "3-bad.png").unlink()
    out = tmp_path / "out"
    # Was "file not found" (no name) after the model loaded, mid-run.
    with pytest.raises(VcriticError, match=r"1 image\(s\) named in .* are missing, e.g. 3-bad.png"):
        train(model=str(tiny_llava), data=pair_data, output=out, stage=1, config=_config(steps=2))
    assert not out.exists()
    (pair_data / "3-bad.png").write_bytes(b"not a png")
    with pytest.raises(VcriticError, match="3-bad.png: not an image"):
        train(model=str(tiny_llava), data=pair_data, output=out, stage=1, config=_config(steps=8, batch_size=4))


def test_half_precision_on_cpu_is_refused_before_any_work(tiny_llava, pair_data, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["train", "--stage", "1", "--model", str(tiny_llava), "--data", str(pair_data), "--output", str(out)]
    for dtype in ("bfloat16", "float16"):  # was a RuntimeError traceback (Half != float) at the first step
        assert main([*args, "--config", "tiny", "--steps", "1", "--dtype", dtype, "--device", "cpu"]) == 1
        err = capsys.readouterr().err
        assert f"--dtype {dtype} trains on CUDA only" in err and "Traceback" not in err
    assert not out.exists()


def test_stage_two_on_stage_one_loads_alone(tiny_llava, pair_data, tmp_path):
    stage1 = tmp_path / "stage1"
    train(model=str(tiny_llava), data=pair_data, output=stage1, stage=1, config=_config(steps=3))
    one = load_critic(stage1).model.state_dict()

    stage2 = tmp_path / "stage2"
    # The test data is stage-1 data (its data.json): refused before the model loads unless asked for (was a warning).
    with pytest.raises(VcriticError, match="was built for stage 1 \\(its data.json\\), not stage 2") as err:
        train(model=str(stage1), data=pair_data, output=stage2, stage=2, config=_config(steps=3, lr=5e-3))
    assert "--allow-stage-mismatch" in err.value.hint and not stage2.exists()
    events = []
    trained = train(model=str(stage1), data=pair_data, output=stage2, stage=2, config=_config(steps=3, lr=5e-3),
                    allow_stage_mismatch=True, on_event=events.append)  # fmt: skip
    assert {"event": "warning", "message": f"{pair_data} was built for stage 1, not 2"} in events
    manifest = json.loads((stage2 / "vcritic.json").read_text())
    assert manifest["base_model"] == str(tiny_llava.resolve())
    assert manifest["adapters"] == ["previous/1", "."] and manifest["stages"] == [1, 2]
    assert (manifest["readout"], manifest["trained_tasks"]) == ("vcritic", [])  # comparisons only: no read-out task
    shutil.rmtree(stage1)  # the stage-2 folder needs nothing from it

    critic = load_critic(stage2)
    two = critic.model.state_dict()
    assert not torch.equal(one["lm_head.weight"], two["lm_head.weight"])  # stage 2 trained on top of stage 1
    in_memory = _in_memory(trained)
    images = [Image.open(p) for p in sorted(pair_data.glob("*.png"))[:4]]
    with torch.no_grad():
        expected = [s.mos for s in in_memory.score(images)]
    assert [s.mos for s in critic.score(images)] == pytest.approx(expected, abs=1e-4)


def test_gradient_checkpointing_gives_the_same_losses(tiny_llava, pair_data, tmp_path):
    curves = []
    for checkpointing in (False, True):
        out = tmp_path / f"gc-{checkpointing}"
        config = _config(steps=3, batch_size=4, gradient_checkpointing=checkpointing)
        train(model=str(tiny_llava), data=pair_data, output=out, stage=1, config=config)
        curves.append([r["loss"] for r in _metrics(out)])
    assert curves[1] == pytest.approx(curves[0], abs=1e-5)


@pytest.mark.parametrize(
    "family", family_params(("blip2", "instructblip", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "idefics3", "smolvlm"))
)
def test_every_family_trains_and_loads_back(tiny_models, family, pair_data, tmp_path):
    out = tmp_path / "out"
    config = _config(steps=2, batch_size=4, train_modules=["projector", "lm_head"])
    train(model=str(tiny_models(family)), data=pair_data, output=out, stage=1, config=config)
    losses = [r["loss"] for r in _metrics(out)]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    critic = load_critic(out)
    assert 0.0 <= critic.compare(Image.new("RGB", (40, 40)), Image.new("RGB", (40, 40), "white")).p_a_better <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("family", family_params(("qwen3_vl", "qwen3_5")))
def test_the_new_bases_train_from_the_command_line_resume_exactly_and_adapt_every_projection(
    tiny_models, family, pair_data, tmp_path, capsys
):
    model = str(tiny_models(family))
    whole, split = tmp_path / "whole", tmp_path / "split"
    args = ["train", "--stage", "1", "--model", model, "--data", str(pair_data), "-o", str(whole)]
    assert main([*args, "--config", "tiny", "--steps", "4", "--batch-size", "4", "--save-every", "2"]) == 0
    assert "Trained model written to" in capsys.readouterr().err

    config = load_config(1, "tiny", {"steps": 4, "batch_size": 4, "save_every": 2, "log_every": 1})

    def interrupt_at_step_3(record):
        if record["event"] == "step" and record["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(model=model, data=pair_data, output=split, stage=1, config=config, on_event=interrupt_at_step_3)
    resumed: list[int] = []
    train(model=model, data=pair_data, output=split, stage=1, config=config, resume=True,
          on_event=lambda r: resumed.append(r["step"]) if r["event"] == "step" else None)  # fmt: skip
    assert resumed == [4]  # continued after the step-3 checkpoint, not from the start
    a, b = _state(whole / "adapter_model.safetensors"), _state(split / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)

    adapted = {k.split(".lora_A")[0].rsplit(".", 1)[-1] for k in a if ".lora_A" in k}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= adapted
    if family == "qwen3_5":  # the linear-attention (gated delta net) layers too
        assert {"in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj"} <= adapted
    assert not any("visual" in k and ".lora_" in k for k in a)  # LoRA stays in the language model


def test_periodic_evaluation_reports_pair_accuracy_and_srcc(tiny_llava, tmp_path, sample_images):
    data = write_pairs(tmp_path / "data", [sample_images["astronaut"], sample_images["coffee"]], n=4, quality=True)
    shutil.copy(data / "dialogues.jsonl", data / "val.jsonl")
    out = tmp_path / "out"
    train(model=str(tiny_llava), data=data, output=out, stage=1, config=_config(steps=2, eval_every=2, batch_size=4))
    evals = [r["eval"] for r in _metrics(out) if "eval" in r]
    assert len(evals) == 1
    assert evals[0]["pairs"] == 8 and evals[0]["rated"] == 8
    assert 0.0 <= evals[0]["pair_accuracy"] <= 1.0 and -1.0 <= evals[0]["srcc"] <= 1.0


def test_evaluation_that_cannot_run_is_said_once_not_skipped_silently(tiny_llava, pair_data, tmp_path):
    def warnings_of(output: Path) -> list[str]:
        said: list[str] = []
        config = _config(steps=2, eval_every=1, batch_size=4)
        on_event = lambda r: said.append(r["message"]) if r["event"] == "warning" else None  # noqa: E731
        train(model=str(tiny_llava), data=pair_data, output=output, stage=1, config=config, on_event=on_event)
        return said

    assert warnings_of(tmp_path / "a") == [f"{pair_data} has no val.jsonl dialogues: nothing to evaluate"]
    # One rated quality dialogue: too few for an SRCC, and no pair to compare.
    rated = Dialogue(
        "quality", "quality", ("0-good.png",), QUALITY.instruction, QUALITY.answer(" good"), meta={"mos": 80}
    )
    write_dialogues(pair_data / "val.jsonl", [rated])
    said = warnings_of(tmp_path / "b")
    assert len(said) == 1 and said[0].startswith("val.jsonl has nothing to evaluate")
    assert not [r for r in _metrics(tmp_path / "b") if "eval" in r]


def test_cli_trains_refuses_to_overwrite_and_the_output_scores(tiny_llava, pair_data, tmp_path, capsys):
    out = tmp_path / "out"
    missing = ["train", "--stage", "1", "--model", str(tiny_llava), "--data", str(tmp_path / "nope"), "-o", str(out)]
    assert main(missing) == 1
    assert "no such folder" in capsys.readouterr().err and not out.exists()  # nothing to --overwrite later
    args = ["train", "--stage", "1", "--model", str(tiny_llava), "--data", str(pair_data), "--output", str(out)]
    assert main([*args, "--config", "tiny", "--steps", "2", "--batch-size", "4", "--save-every", "1"]) == 0
    err = capsys.readouterr().err
    assert "step 2/2" in err and "loss" in err and "Trained model written to" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-1", "step-2"]

    assert main([*args, "--config", "tiny", "--steps", "2"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--config", "tiny", "--steps", "2", "--batch-size", "4", "--lr", "5e-3", "--resume"]) == 1
    assert "cannot resume with a different lr" in capsys.readouterr().err
    # Fewer steps than done used to re-export the step-2 weights silently, as if from a 1-step run.
    exported = (out / "vcritic.json").read_bytes()
    assert main([*args, "--config", "tiny", "--steps", "1", "--batch-size", "4", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "Error: --steps 1 is below the 2 steps this run has already done" in err and "Traceback" not in err
    assert (out / "vcritic.json").read_bytes() == exported
    assert main([*args, "--config", "nope"]) == 2
    assert "unknown config 'nope'" in capsys.readouterr().err

    # --resume without --steps continues to the run's 2 steps, not the preset's 2000 (and keeps --save-every 1).
    shutil.rmtree(out / "checkpoints" / "step-2")
    assert main([*args, "--config", "tiny", "--batch-size", "4", "--resume"]) == 0
    assert "step 2/2" in capsys.readouterr().err
    assert [r["step"] for r in _metrics(out)][-1] == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-1", "step-2"]

    image = tmp_path / "x.png"
    Image.new("RGB", (48, 48), (120, 30, 30)).save(image)
    assert main(["score", str(image), "--model", str(out)]) == 0
    # Stage 1 teaches relativity only: its vcritic.json declares no trained task, so the MOS is marked untrained.
    assert capsys.readouterr().out.startswith("path,mos,mos_std,untrained,scale,error\n" + f"{image},")


def test_full_fine_tuning_without_lora_writes_a_whole_model_that_loads_alone(tiny_llava, pair_data, tmp_path):
    config = _config(steps=2, batch_size=4, lora_r=0, train_modules=["language_model", "projector", "lm_head"])
    out = tmp_path / "full"
    trained = train(model=str(tiny_llava), data=pair_data, output=out, stage=1, config=config)
    manifest = json.loads((out / "vcritic.json").read_text())
    assert (manifest["base_model"], manifest["adapters"]) == (".", [])
    assert not (out / "adapter_config.json").exists() and (out / "config.json").is_file()

    before, critic = load_critic(tiny_llava).model.state_dict(), load_critic(out)
    after = critic.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("language_model.layers.0.mlp" in k for k in changed)  # the decoder itself, not an adapter
    assert not any("vision_tower" in k for k in changed)
    in_memory = _in_memory(trained)
    images = [Image.open(p) for p in sorted(pair_data.glob("*.png"))[:4]]
    with torch.no_grad():
        expected = [s.mos for s in in_memory.score(images)]
    assert [s.mos for s in critic.score(images)] == pytest.approx(expected, abs=1e-5)

    with pytest.raises(VcriticError, match="lora_r: 0"):
        train(
            model=str(tiny_llava),
            data=pair_data,
            output=tmp_path / "refused",
            stage=1,
            config=_config(steps=1, train_modules=["language_model"]),
        )


@pytest.mark.slow
def test_wiring_proof_training_pairs_are_learned_from_the_images_alone(tiny_llava, tmp_path, sample_images):
    """16 fixed pairs, each in both orders with identical text: only the images can decide the answer.

    The vision tower stays frozen and random; LoRA, the projector and the output layer learn to read it. The pairs
    are made at the tiny model's own input size (32 px): made at 128 px, the processor's downscaling averaged the
    blur and the noise away (those pairs differed 5-7x less at the model's input than the brightness and contrast
    pairs), and whether training told them apart within the steps depended on the initial weights, so on the
    versions that built the model (accuracy 0.844 on one fresh environment). At 32 px every pair differs visibly
    at the input, and what is asserted is unchanged.
    """
    import time

    sources = [sample_images[k] for k in ("astronaut", "chelsea", "coffee", "rocket")]
    data = write_pairs(tmp_path / "data", sources, n=16, size=32)
    config = load_config(1, "tiny", WIRING)
    started = time.monotonic()
    trained = train(model=str(tiny_llava), data=data, output=tmp_path / "out", stage=1, config=config)
    seconds = time.monotonic() - started

    critic = _in_memory(trained)
    pairs = [(Image.open(data / f"{i}-good.png"), Image.open(data / f"{i}-bad.png")) for i in range(16)]
    items = [critic.encoder.encode_pair(a, b) for a, b in pairs] + [critic.encoder.encode_pair(b, a) for a, b in pairs]
    first = critic.read_single(critic.pair_question, critic.encoder.collate(items)).probs[:, 0] > 0.5
    good_first, bad_first = first[:16], first[16:]
    accuracy = (good_first.sum() + (~bad_first).sum()).item() / 32
    flipped = (good_first != bad_first).float().mean().item()
    print(f"wiring proof: accuracy {accuracy:.3f}, swap flips {flipped:.3f}, {seconds:.0f} s")
    assert accuracy >= 0.9 and flipped >= 0.75


@pytest.mark.needs_torchvision
@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
def test_training_resolution_is_recorded_used_by_scoring_and_inherited_by_the_next_stage(
    tiny_models, pair_data, tmp_path, sample_images
):
    from vcritic.model.resolution import fixed_size

    qwen = str(tiny_models("qwen2_5_vl"))
    shutil.copy(pair_data / "dialogues.jsonl", pair_data / "val.jsonl")
    out = tmp_path / "stage1"
    config = _config(steps=2, batch_size=4, train_modules=["projector", "lm_head"], image_size=56, eval_every=2)
    events = []
    trained = train(model=qwen, data=pair_data, output=out, stage=1, config=config, on_event=events.append)
    # Training and its evaluation encode with this processor: every image a 56x56 square, 2x2 merged tokens.
    assert fixed_size(trained.processor) == 56
    assert [e["resolution"] for e in events if e["event"] == "start"] == ["--image-size 56"]
    assert [r["eval"]["pairs"] for r in _metrics(out) if "eval" in r] == [16]
    manifest = json.loads((out / "vcritic.json").read_text())
    assert manifest["resolution"] == {"max_pixels": None, "image_size": 56}

    # Portrait and landscape: only the fixed square input makes the loaded model see what training saw.
    images = [sample_images[name].convert("RGB") for name in ("rocket", "coffee")]
    in_memory = _in_memory(trained)
    with torch.no_grad():
        expected = [s.mos for s in in_memory.score(images)]
    critic = load_critic(out)  # no flag: vcritic.json says
    assert (critic.resolution.image_size, critic.resolution.source) == (56, "vcritic.json")
    assert [s.mos for s in critic.score(images)] == pytest.approx(expected, abs=1e-4)
    flagged = load_critic(out, max_pixels=28 * 28 * 12)  # a flag wins, and replaces the recorded pair
    assert (flagged.resolution.max_pixels, flagged.resolution.image_size, fixed_size(flagged.processor)) == (
        9408,
        None,
        None,
    )
    assert [s.mos for s in flagged.score(images)] != pytest.approx(expected, abs=1e-4)

    stage2 = tmp_path / "stage2"
    events.clear()
    train(model=str(out), data=pair_data, output=stage2, stage=2, config=_config(steps=1), on_event=events.append,
          allow_stage_mismatch=True)  # fmt: skip
    assert [e["resolution"] for e in events if e["event"] == "start"] == ["--image-size 56 (from vcritic.json)"]
    assert json.loads((stage2 / "vcritic.json").read_text())["resolution"] == manifest["resolution"]
    stage2b = tmp_path / "stage2b"
    train(model=str(out), data=pair_data, output=stage2b, stage=2, config=_config(steps=1, max_pixels=3136),
          allow_stage_mismatch=True)  # fmt: skip
    assert json.loads((stage2b / "vcritic.json").read_text())["resolution"] == {"max_pixels": 3136, "image_size": None}

    # A vcritic.json from before the key: the checkpoint's own resizing, as it always loaded.
    del manifest["resolution"]
    (out / "vcritic.json").write_text(json.dumps(manifest))
    old = load_critic(out)
    assert (old.resolution.source, fixed_size(old.processor)) == ("default", None)
    assert len(old.score(images)) == 2
    (out / "vcritic.json").write_text(json.dumps({**manifest, "resolution": {"image_size": "big"}}))
    range_named = r"'resolution' must hold max_pixels \(1 to 12845056\) and image_size \(1 to 3584\)"
    with pytest.raises(VcriticError, match=range_named):
        load_critic(out)


def test_cli_train_image_size_reaches_vcritic_json_and_the_score_summary(tiny_llava, pair_data, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["train", "--stage", "1", "--model", str(tiny_llava), "--data", str(pair_data), "--output", str(out)]
    assert main([*args, "--config", "tiny", "--steps", "1", "--batch-size", "4", "--max-pixels", "4096"]) == 1
    assert "--max-pixels does not apply: CLIPImageProcessor" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--config", "tiny", "--steps", "1", "--batch-size", "4", "--image-size", "32"]) == 0
    assert "images at --image-size 32" in capsys.readouterr().err
    assert json.loads((out / "vcritic.json").read_text())["resolution"] == {"max_pixels": None, "image_size": 32}

    image = tmp_path / "x.png"
    Image.new("RGB", (48, 40), (120, 30, 30)).save(image)
    assert main(["score", str(image), "--model", str(out)]) == 0
    assert "; images at --image-size 32 (from vcritic.json)" in capsys.readouterr().err
    assert main(["score", str(image), "--model", str(out), "--image-size", "32"]) == 0
    err = capsys.readouterr().err
    assert "; images at --image-size 32\n" in err
    assert main(["score", str(image), "--model", str(tiny_llava)]) == 0
    assert "; images at the checkpoint's default resolution" in capsys.readouterr().err


def test_config_file_sets_the_training_resolution(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("image_size: 448\nstages:\n  2: {max_pixels: 200704}\n")
    assert (load_config(1, str(path)).image_size, load_config(1, str(path)).max_pixels) == (448, None)
    assert load_config(2, str(path), {"image_size": 224}).image_size == 224  # a flag wins
    assert load_config(1).image_size is None and load_config(1).max_pixels is None  # the checkpoint's own
    cases = (
        ("image_size: -28", "must be from 1 to 3584"),
        ("image_size: 100000", "must be from 1 to 3584"),
        ("max_pixels: lots", "must be a whole number"),
    )
    for bad, why in cases:
        path.write_text(bad + "\n")
        with pytest.raises(VcriticError, match=why) as caught:
            load_config(1, str(path))
        assert bad.split(":")[0] in caught.value.message


def test_device_cuda_n_is_refused_under_accelerate_launch(tiny_llava, pair_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # what accelerate launch / torchrun set for each process
    out = tmp_path / "out"
    args = ["train", "--stage", "1", "--model", str(tiny_llava), "--data", str(pair_data), "--output", str(out)]
    assert main([*args, "--device", "cuda:1"]) == 1
    err = capsys.readouterr().err
    assert "--device cuda:1 cannot be honoured under accelerate launch" in err and "CUDA_VISIBLE_DEVICES" in err
    assert not out.exists()


@pytest.mark.gpu
def test_device_cuda_n_is_honoured_by_a_single_process(tiny_llava, pair_data, tmp_path):
    index = torch.cuda.device_count() - 1  # the last GPU: not the one accelerate picks on its own (GPU 0)
    events = []
    trained = train(
        model=str(tiny_llava),
        data=pair_data,
        output=tmp_path / "out",
        stage=1,
        config=_config(steps=1, batch_size=4),
        device=f"cuda:{index}",
        on_event=events.append,
    )
    assert [e["device"] for e in events if e["event"] == "start"] == [f"cuda:{index}"]
    assert {p.device for p in trained.model.parameters()} == {torch.device("cuda", index)}


def test_held_out_declines_are_evaluated_and_learned(tiny_llava, tmp_path, sample_images):
    import random

    from vcritic.data.dialogues import read_dialogues
    from vcritic.data.instruct import decline_dialogues
    from vcritic.training.evaluate import decline_rate, evaluation_sample

    data = write_pairs(tmp_path / "data", [sample_images["astronaut"], sample_images["coffee"]], n=4)
    pairs = list(read_dialogues(data / "dialogues.jsonl"))
    images = sorted({p for d in pairs for p in d.images})
    train_declines = decline_dialogues(images[:4], 8, random.Random(0))
    held_out = decline_dialogues(images[4:], 4, random.Random(1))  # images and requests it did not train on
    write_dialogues(data / "dialogues.jsonl", train_declines)
    write_dialogues(data / "val.jsonl", pairs + held_out)  # declines last, as data build writes them
    # eval_samples 6 of 12: in turn from each task, so the declines at the end of the file are evaluated.
    assert [d.task for d in evaluation_sample(pairs + held_out, 6)] == ["relativity", "decline"] * 3

    untrained = decline_rate(load_critic(tiny_llava), held_out, lambda name: data / name)
    out = tmp_path / "out"
    config = _config(steps=48, batch_size=4, eval_every=48, eval_samples=6)
    train(model=str(tiny_llava), data=data, output=out, stage=3, config=config)
    (evaluated,) = [r["eval"] for r in _metrics(out) if "eval" in r]
    assert (evaluated["pairs"], evaluated["declines"]) == (3, 3)
    assert untrained == 0.0 and evaluated["decline_rate"] == 1.0
