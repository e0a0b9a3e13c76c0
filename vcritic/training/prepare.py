"""What a run trains with, set up on ``accelerate``: the device and precision, the ``Accelerator``, and the model,
optimizer, learning-rate schedule and data loader prepared on it (:class:`Prepared`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vcritic.data.datadir import TrainData
from vcritic.errors import VcriticError
from vcritic.pipeline.distributed import check_launch_device
from vcritic.training.config import TrainConfig


@dataclass
class Prepared:
    """The objects the step loop drives (model, optimizer and loader as ``accelerator.prepare`` wrapped them), and
    what periodic evaluation reads the model with."""

    accelerator: Any
    net: Any
    optimizer: Any
    scheduler: Any
    loader: Any
    sampler: Any
    params: list  # the trainable parameters
    dtype: Any  # the torch dtype the model computes in
    processor: Any
    family: Any


def device_and_dtype(device: str | None, dtype: str | None) -> tuple[Any, Any]:
    """The torch device and dtype a run trains in (``--device``, ``--dtype``, or the defaults)."""
    import torch

    from vcritic.model.runtime import resolve_device, resolve_dtype

    check_launch_device(device)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if torch_dtype != torch.float32 and torch_device.type != "cuda":
        # Half precision trains as mixed precision (float32 trainable weights under autocast), which is CUDA-only here.
        raise VcriticError(
            f"--dtype {dtype} trains on CUDA only; on {torch_device.type} training runs in float32",
            hint="leave --dtype out, or use float32",
        )
    return torch_device, torch_dtype


def training_accelerator(torch_device, torch_dtype, config: TrainConfig):
    """The run's ``Accelerator``: mixed precision for a half ``torch_dtype``, ``grad_accum`` micro-batches a step."""
    import torch
    from accelerate.utils import DistributedDataParallelKwargs, GradientAccumulationPlugin

    half = torch_dtype in (torch.bfloat16, torch.float16) and torch_device.type == "cuda"
    accelerator = accelerator_on(
        torch_device,
        cpu=torch_device.type == "cpu",
        # LLaVA-style models read an inner layer of the vision tower, so a trained tower has weights that get no
        # gradient (post_layernorm, later layers); several processes (DDP) must be told, or the step fails.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=not config.freeze_vision)],
        mixed_precision=("bf16" if torch_dtype == torch.bfloat16 else "fp16") if half else "no",
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=config.grad_accum, sync_with_dataloader=False
        ),
        rng_types=[],  # the data order is a function of seed and epoch; nothing to synchronise
    )
    if accelerator.num_processes == 1 and accelerator.device != torch_device:
        raise VcriticError(
            f"accelerate already runs this process on {accelerator.device}, not {torch_device}",
            hint="train on one device per Python process (a new vcritic train run)",
        )
    return accelerator


def accelerator_on(device, **kwargs):
    """An ``Accelerator`` on ``device``. On its own, a single process goes to accelerate's default device (``cuda``
    = GPU 0, whatever --device cuda:N says); accelerate reads ``ACCELERATE_TORCH_DEVICE`` when its process state is
    first created, so it is set for that moment. Several processes (accelerate launch) each take their own GPU."""
    import os

    import torch
    from accelerate import Accelerator

    from vcritic.model.compat import reset_accelerate_state
    from vcritic.pipeline.distributed import launched_processes

    if launched_processes() > 1:
        return Accelerator(**kwargs)
    # accelerate keeps one state per Python process: an earlier run here (notebook, tests) on another device would
    # otherwise decide where this one trains.
    reset_accelerate_state(device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # kernels and caches that use the current GPU follow too
    before = os.environ.get("ACCELERATE_TORCH_DEVICE")
    os.environ["ACCELERATE_TORCH_DEVICE"] = str(device)
    try:
        return Accelerator(**kwargs)
    finally:
        if before is None:
            del os.environ["ACCELERATE_TORCH_DEVICE"]
        else:
            os.environ["ACCELERATE_TORCH_DEVICE"] = before


def prepare(accelerator, net, processor, family, data: TrainData, config: TrainConfig, dtype) -> Prepared:
    """The data loader (one task per batch), AdamW and the schedule for ``net``, prepared on ``accelerator``."""
    import torch

    from vcritic.inference.encoder import Encoder
    from vcritic.training.collate import DialogueDataset, TrainingCollate
    from vcritic.training.sampler import TaskBatchSampler, lr_at
    from vcritic.training.trainable import trainable_names

    trained = trainable_names(net)
    encoder = Encoder(processor, family)
    dataset = DialogueDataset(data.dialogues, data.root, encoder)
    sampler = TaskBatchSampler([d.task for d in data.dialogues], config.batch_size, config.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=TrainingCollate(encoder),
        num_workers=config.workers,
        # Its own generator, so creating an iterator (at an epoch start, or mid-epoch on resume) does not draw
        # from the global RNG that dropout uses: a resumed run then repeats an uninterrupted one exactly.
        generator=torch.Generator().manual_seed(config.seed),
    )
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, config) / config.lr)
    net, optimizer, loader = accelerator.prepare(net, optimizer, loader)
    # The scheduler steps once per optimizer step here, not once per process as a prepared one would; it is not
    # registered with accelerate, which unpickles registered objects with weights_only=False (see checkpoints).
    # Checkpoints hold the trained weights only; on resume the frozen rest comes from --model again.
    accelerator.register_save_state_pre_hook(lambda _models, weights, _dir: [_keep_only(w, trained) for w in weights])
    return Prepared(accelerator, net, optimizer, scheduler, loader, sampler, params, dtype, processor, family)


def _keep_only(weights: dict, names: set[str]) -> None:
    # A model wrapped for several processes (DistributedDataParallel) prefixes its keys with "module.".
    for key in [k for k in weights if k.removeprefix("module.") not in names]:
        del weights[key]
