"""Setting up a training run: accelerator, dataset, model, train mode and optimizer.

Each builder takes the `TrainConfig` and returns one piece; `actwm.train.trainer.Trainer` calls them in
order. Item checks live in `actwm.batch.Batch` (shapes, pixel range) and `check_compatible` (model vs data).
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs, FullyShardedDataParallelPlugin
from accelerate.state import AcceleratorState
from safetensors import SafetensorError
from torch import nn
from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import Dataset, default_collate

from actwm.actions import ActionSpace, get_action_space
from actwm.batch import Batch
from actwm.data.clips import ClipDataset
from actwm.models.compiling import compile_in_place
from actwm.models.config import with_overrides
from actwm.models.wan_fast import FastPaths
from actwm.models.world_model import CONFIG_NAME, WEIGHTS_NAME, WorldModel, WorldModelConfig
from actwm.models.world_model import PRESETS as MODEL_PRESETS
from actwm.train.config import TrainConfig

# ------------------------------------------------------------------------------------------- model


class LossModule(nn.Module):
    """Wraps a `WorldModel` so that its training loss is `forward` (what DDP/FSDP and autocast wrap)."""

    def __init__(self, wm: WorldModel) -> None:
        super().__init__()
        self.wm = wm

    def forward(self, batch: Batch, generator: torch.Generator, action_dropout: float) -> torch.Tensor:
        """A `Batch` (video `(b, T, 3, H, W)` in [-1, 1], actions `(b, T, D)`, optional state and KVAF video)
        -> scalar loss (`WorldModel.loss` uses the state only when the model has a state embedding)."""
        return self.wm.loss(batch, generator=generator, action_dropout=action_dropout)


def param_groups(wm: WorldModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: trainable backbone params at `cfg.lr`, action params at `cfg.lr * cfg.action_lr_mult`.

    Trainable parameters outside both lists (none in the shipped adapters) join the backbone group.
    """
    action = [p for p in wm.action_parameters() if p.requires_grad]
    taken = {id(p) for p in action}
    backbone = [p for p in wm.backbone_parameters() if id(p) not in taken]
    taken |= {id(p) for p in backbone}
    backbone += [p for p in wm.parameters() if p.requires_grad and id(p) not in taken]
    groups = []
    if backbone:
        groups.append({"params": backbone, "lr": cfg.lr, "name": "backbone"})
    if action:
        groups.append({"params": action, "lr": cfg.lr * cfg.action_lr_mult, "name": "action"})
    if not groups:
        raise ValueError(
            f"nothing to train: train_mode={cfg.train_mode!r} passive={cfg.passive} leaves no trainable parameter"
        )
    return groups


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base lr at optimizer step `step` (0-based): linear warmup, then cosine or constant."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    wm: WorldModel, cfg: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over `param_groups` and its warmup/cosine `LambdaLR`."""
    impl = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[cfg.optimizer_impl]
    opt = torch.optim.AdamW(param_groups(wm, cfg), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **impl)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    return opt, sched


#: Settings of the learning-rate schedule and optimizer groups: a resume applies this run's values.
LR_SETTINGS = ("lr", "action_lr_mult", "weight_decay", "warmup_steps", "schedule", "min_lr_ratio")


def apply_config_lrs(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, cfg: TrainConfig) -> None:
    """`cfg`'s lr, action_lr_mult and weight_decay over those a checkpoint's optimizer and scheduler state restored:
    a resume with a new lr trains at it. Unchanged settings give the floats LambdaLR would (base lr x `lr_factor`
    at its step), so an unchanged resume stays bit-exact."""
    bases = {"backbone": cfg.lr, "action": cfg.lr * cfg.action_lr_mult}
    sched.base_lrs = [bases[g["name"]] for g in opt.param_groups]
    factor = lr_factor(sched.last_epoch, cfg)
    for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
        group.update(initial_lr=base, lr=base * factor, weight_decay=cfg.weight_decay)


def _model_backbone(name: str) -> str:
    return MODEL_PRESETS["wan2.1-tiny" if name == "tiny" else name][0]


def dataset_action_space(dataset: Dataset, dim: int) -> ActionSpace:
    """The model's action space for a dataset: its named space with the statistics of the dataset's
    normalisation (`dataset_normalisation`), or `customD` for plain datasets."""
    name = getattr(dataset, "action_space", None)
    space = (
        get_action_space(name)
        if isinstance(name, str)
        else (name if isinstance(name, ActionSpace) else get_action_space(dim))
    )
    if space.dim != dim:
        raise ValueError(f"dataset actions have D={dim} but its action space {space.name!r} has D={space.dim}")
    stats = dataset_normalisation(dataset, dim)
    return space if stats is None else space.with_stats(*stats)


def dataset_normalisation(dataset: Dataset, dim: int) -> tuple[list[float], list[float]] | None:
    """`(mean, std)` per action dimension such that the dataset's normalised actions are `(a - mean) / std`,
    or None for a dataset that normalises nothing it tells us about.

    Reads `dataset.normaliser` (an `actwm.actions.ActionNormaliser`: per-dimension `loc` and `scale`, as
    `ClipDataset.normaliser`); a dataset without one normalises nothing the model needs to know.
    """
    normaliser = getattr(dataset, "normaliser", None)
    if normaliser is not None:
        if getattr(normaliser, "first_loc", None) is not None:
            raise ValueError(
                "TrainConfig.normalise: NWM's delta normalisation keeps a row-0 offset that the model's action space "
                "cannot store; use normalise='nwm_scale' or 'std', or action_mode='cumulative'"
            )
        mean, std = (np.asarray(getattr(normaliser, k), np.float64).reshape(-1) for k in ("loc", "scale"))
        if mean.shape != (dim,) or std.shape != (dim,) or not np.all(np.isfinite(std) & (np.abs(std) > 1e-12)):
            raise ValueError(f"the dataset's action normaliser must give {dim} finite locs and non-zero scales")
        return mean.tolist(), std.tolist()
    return None


def build_dataset(cfg: TrainConfig) -> Dataset:
    """`ClipDataset(cfg.data, ...)` with the clip-sampler settings of `cfg`."""
    if cfg.data is None:
        raise ValueError("TrainConfig.data: a LeRobot store directory is required when no dataset is passed to train()")
    if not Path(cfg.data).exists():
        raise FileNotFoundError(f"TrainConfig.data: {cfg.data}: no such dataset directory")
    return ClipDataset(cfg.data, **cfg.clip_settings())


def build_model(cfg: TrainConfig, space: ActionSpace) -> WorldModel:
    """`WorldModel.load(cfg.init_from)` (checked against `cfg.model`'s backbone and the data's action
    space, then given the data's normalisation) or the `cfg.model` preset for `space`."""
    if cfg.init_from:
        backbone = _model_backbone(cfg.model)
        try:
            wm = WorldModel.load(cfg.init_from, backbone=backbone, action_space=space)
        except ValueError as exc:
            raise ValueError(
                f"TrainConfig.init_from: {exc} (TrainConfig.model={cfg.model!r}, data action space {space.name!r})"
            ) from exc
        except (TypeError, KeyError, RuntimeError, OSError, SafetensorError) as exc:  # a damaged or foreign save
            first = str(exc).splitlines()[0] if str(exc) else ""
            name = CONFIG_NAME if isinstance(exc, (TypeError, KeyError)) else WEIGHTS_NAME
            raise ValueError(
                f"TrainConfig.init_from: {Path(cfg.init_from) / name}: not a loadable world model "
                f"({type(exc).__name__}: {first})"
            ) from exc
        if cfg.state_dim and cfg.state_dim != wm.encoder.cfg.state_dim:
            raise ValueError(
                f"TrainConfig.state_dim: {cfg.state_dim} differs from the init_from model's state_dim "
                f"{wm.encoder.cfg.state_dim}"
            )
        if wm.config.conditioning != cfg.conditioning:
            raise ValueError(
                f"TrainConfig.conditioning: {cfg.conditioning!r} differs from the init_from model's "
                f"{wm.config.conditioning!r}"
            )
        wm.action_space = space
        wm.config.action_space = space.to_dict()
        return wm
    torch.manual_seed(cfg.seed)
    overrides = dict(
        train_mode=cfg.train_mode,
        encoder={"state_dim": cfg.state_dim},
        lora_rank=cfg.lora_rank,
        lora_alpha=float(cfg.lora_alpha if cfg.lora_alpha is not None else cfg.lora_rank),
        conditioning=cfg.conditioning,
    )
    return WorldModel.from_preset(cfg.model, space, **with_overrides(overrides, cfg.model_overrides))


def with_lora(wm: WorldModel, rank: int, alpha: float) -> WorldModel:
    """A copy of a LoRA-free world model with LoRA adapters added (base weights copied, adapters fresh)."""
    new_cfg = WorldModelConfig.from_dict(
        {**wm.config.to_dict(), "train_mode": "lora", "lora_rank": rank, "lora_alpha": alpha}
    )
    new = WorldModel.from_config(new_cfg)
    src = wm.state_dict()
    mapped, missing = {}, []
    for key in new.state_dict():
        plain = key.replace(".base_layer.", ".")
        if key in src:
            mapped[key] = src[key]
        elif plain in src:
            mapped[key] = src[plain]
        elif "lora_" not in key:
            missing.append(key)
    if missing:
        raise ValueError(f"cannot add LoRA to this model: no source weights for {missing[:5]}")
    new.load_state_dict(mapped, strict=False)
    new.action_space = wm.action_space
    return new


def apply_train_mode(wm: WorldModel, cfg: TrainConfig) -> WorldModel:
    """Set `cfg.train_mode` (adding LoRA layers when missing) and, in the passive stage, freeze the action encoder."""
    has_lora = any("lora_" in n for n, _ in wm.adapter.backbone.named_parameters())
    if cfg.train_mode == "lora" and not has_lora:
        wm = with_lora(wm, cfg.lora_rank, float(cfg.lora_alpha if cfg.lora_alpha is not None else cfg.lora_rank))
    wm.kvaf_stage = cfg.kvaf_stage  # KVAF models: stage 1 freezes the fusion
    wm.set_train_mode(cfg.train_mode)
    if cfg.passive:
        wm.encoder.requires_grad_(False)
    return wm


def record_data_facts(wm: WorldModel, cfg: TrainConfig, dataset: Dataset, batch: Batch) -> None:
    """Store what the model is trained on in its config (saved with it; rollouts read these fields):
    the action mode, the image size `[H, W]`, the clip frame rate and the frames per clip (`batch`: a sample)."""
    data_cfg = getattr(dataset, "config", None)
    facts = {
        "action_mode": getattr(data_cfg, "action_mode", cfg.action_mode),
        "image_size": [int(batch.video.shape[-2]), int(batch.video.shape[-1])],
        "fps": float(dataset.clip_fps) if getattr(dataset, "clip_fps", None) else None,
        "clip_frames": batch.frames,
    }
    for key, value in facts.items():
        if value is not None and hasattr(wm.config, key):
            setattr(wm.config, key, value)


# ------------------------------------------------------------------------------------------ speed switches

SDPA_KERNELS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}


def apply_speed_switches(wm: WorldModel, cfg: TrainConfig, device: torch.device) -> None:
    """`cfg.fast_paths` (the Wan adapter's fast paths under autograd), `cfg.channels_last` (convolution weights)
    and `cfg.compile` (the backbone, in place: parameter names, checkpoints and hooks unchanged). Each changes float
    rounding only, not the computation."""
    if cfg.sdpa_backend in ("efficient", "cudnn") and device.type != "cuda":
        raise ValueError(f"TrainConfig.sdpa_backend: {cfg.sdpa_backend!r} needs a CUDA GPU; use 'math' or 'flash'")
    if cfg.fast_paths:
        paths = getattr(wm.adapter, "fast", None)
        if not isinstance(paths, FastPaths):
            raise ValueError(
                f"TrainConfig.fast_paths: only Wan backbones have training fast paths; {cfg.model!r} has none"
            )
        paths.training = True  # before compile: dynamo traces the fast paths
    if cfg.channels_last:
        for module in wm.modules():
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)
            elif isinstance(module, nn.Conv3d):
                module.to(memory_format=torch.channels_last_3d)
    if cfg.compile:  # a laptop without a C++ toolchain still trains, uncompiled (warned)
        compile_in_place(wm.adapter.backbone, "TrainConfig.compile: training", device)


def attention_context(cfg: TrainConfig) -> contextlib.AbstractContextManager:
    """The SDPA kernel choice of `cfg.sdpa_backend` for forward and backward (a no-op when None)."""
    if cfg.sdpa_backend is None:
        return contextlib.nullcontext()
    return sdpa_kernel([SDPA_KERNELS[cfg.sdpa_backend]])


# ------------------------------------------------------------------------------------------ accelerator


def _launched_world_size() -> int:
    for key in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if key in os.environ:
            return int(os.environ[key])
    return 1


def make_accelerator(cfg: TrainConfig):
    """An `accelerate.Accelerator` for the config (fresh state, so several runs can share a process)."""
    if cfg.mixed_precision == "fp16" and (cfg.cpu or not torch.cuda.is_available()):
        raise ValueError("TrainConfig.mixed_precision: 'fp16' needs a CUDA GPU; use 'bf16' or 'no' on CPU")
    if cfg.distributed == "fsdp" and (cfg.cpu or not torch.cuda.is_available()):
        raise ValueError("TrainConfig.distributed: 'fsdp' needs GPUs (none in use here); use 'auto' or 'ddp' on CPU")
    AcceleratorState._reset_state(reset_partial_state=False)
    kwargs: dict[str, Any] = {}
    if cfg.distributed == "fsdp":
        kwargs["fsdp_plugin"] = _fsdp_plugin(_model_backbone(cfg.model))
    cpu = cfg.cpu or not (torch.cuda.is_available() or _has_other_accelerator())  # CPU-only torchrun needs cpu=True
    acc = Accelerator(
        cpu=cpu,
        mixed_precision=cfg.mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
        **kwargs,
    )
    if _launched_world_size() > 1 and acc.num_processes == 1:
        raise ValueError(
            f"launched with WORLD_SIZE={_launched_world_size()} but accelerate set up a single process; "
            "check the launcher's environment (MASTER_ADDR, MASTER_PORT, RANK)"
        )
    return acc


def _has_other_accelerator() -> bool:
    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return bool((xpu is not None and xpu.is_available()) or (mps is not None and mps.is_available()))


FSDP_WRAP = {
    "svd": ["SpatioTemporalResBlock", "TransformerSpatioTemporalModel"],
    "cosmos": ["CosmosTransformerBlock"],
    "wan2.1": ["WanTransformerBlock"],
    "wan2.2": ["WanTransformerBlock"],
}


def _fsdp_plugin(backbone: str):
    """FSDP1 over the backbone's blocks (`FSDP_WRAP`), original parameters kept (two lr groups), full state dicts."""
    return FullyShardedDataParallelPlugin(
        fsdp_version=1,
        sharding_strategy="FULL_SHARD",
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=FSDP_WRAP[backbone],
        use_orig_params=True,
        state_dict_type="FULL_STATE_DICT",
        state_dict_config=FullStateDictConfig(offload_to_cpu=True, rank0_only=True),
        optim_state_dict_config=FullOptimStateDictConfig(offload_to_cpu=True, rank0_only=False),
        sync_module_states=True,
    )


# ------------------------------------------------------------------------------------------ data checks


def sample_batch(dataset: Dataset) -> Batch:
    """Item 0 of `dataset` as a `Batch` of one (its checks name what is wrong with the dataset's items)."""
    item = dataset[0]
    if not isinstance(item, dict):
        raise ValueError("dataset items must be dicts with 'video' (T, 3, H, W) and 'actions' (T, D) (and 'state')")
    for key, ndim, what in (("video", 4, "(frames, 3, H, W)"), ("actions", 2, "(frames, D)")):
        value = item.get(key)
        if isinstance(value, torch.Tensor) and value.ndim != ndim:
            raise ValueError(f"dataset item {key!r} must be {what}, got {tuple(value.shape)}")
    return Batch.from_collated(default_collate([item]))


def check_compatible(wm: WorldModel, batch: Batch) -> None:
    """Refuse clips the model cannot train on: action size, frames per clip, state size (ValueError)."""
    dim, frames = batch.actions.shape[-1], batch.frames
    if dim != wm.action_space.dim:
        raise ValueError(
            f"dataset actions have D={dim} but the model's action space {wm.action_space.name!r} has "
            f"D={wm.action_space.dim}"
        )
    k = wm.codec.temporal_compression if wm.codec is not None else 1
    if k > 1 and (frames - 1) % k:
        raise ValueError(
            f"clips of {frames} frames (context + horizon) do not fit the {wm.config.backbone} backbone: it needs "
            f"1 + {k}*n frames (e.g. {1 + k * max(1, (frames - 1) // k)}); change TrainConfig.horizon"
        )
    s = wm.encoder.cfg.state_dim
    if s and (batch.state is None or batch.state.shape[-1] != s):
        got = None if batch.state is None else tuple(batch.state.shape[1:])
        raise ValueError(f"the model embeds a state of size {s} (state_dim) but dataset item 'state' is {got}")


__all__ = [
    "LossModule",
    "param_groups",
    "lr_factor",
    "build_optimizer",
    "dataset_action_space",
    "dataset_normalisation",
    "build_dataset",
    "build_model",
    "with_lora",
    "apply_train_mode",
    "record_data_facts",
    "make_accelerator",
    "sample_batch",
    "check_compatible",
    "FSDP_WRAP",
    "apply_speed_switches",
    "attention_context",
]
