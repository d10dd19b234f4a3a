"""The training engine: one code path for every backbone, one process or many.

`train(cfg)` fine-tunes a `WorldModel` with the backbone's own objective (`WorldModel.loss`: EDM for
SVD, flow matching for Cosmos-Predict2 and Wan) on clips of a LeRobot store (or any Dataset of clip
dicts). What it does, in order:

1. Builds an `accelerate.Accelerator`: one process, or data-parallel when started with
   `accelerate launch` / `torchrun` (DDP on GPUs or on CPU processes with gloo; FSDP with
   `distributed="fsdp"`). Mixed precision through accelerate (`bf16` autocast on CPU or GPU, `fp16`
   with loss scaling on GPU).
2. Builds the dataset (`ClipDataset` from `cfg.data`) and the model (`cfg.init_from`, or the
   `cfg.model` preset with the dataset's action space and normalisation statistics), applies the
   train mode (full / LoRA / frozen backbone) and, for the passive stage, freezes the action encoder
   and drops every action embedding (the bare backbone). The clip facts rollouts need (action mode,
   image size, clip fps, frames per clip) are written into the model's config.
3. AdamW with two parameter groups: backbone at `lr`, action module at `lr * action_lr_mult`
   (EgoWM: 10x); linear warmup then cosine (or constant); gradient accumulation; gradient clipping;
   optional EMA of the trainable weights.
4. Stateless randomness: the clips of optimizer step `s`, micro-batch `m`, rank `r` and the
   diffusion noise/time of that micro-batch are functions of `(seed, s, m, r)` only (clip order: one
   seeded permutation of the dataset per epoch). A run resumed from a checkpoint therefore repeats the
   uninterrupted run exactly (bit-for-bit on CPU), and every rank sees different clips.
5. Checkpoints every `checkpoint_every` steps (see `actwm.train.checkpoint`), a `metrics.csv` row every
   `log_every` steps, a tqdm bar; at the end `out/final/` holds the world model (EMA weights when
   enabled), loadable with `WorldModel.load`.

Scale-out::

    accelerate launch --num_processes 8 -m actwm.train.cli --preset svd-8gpu --data STORE --out RUN
    torchrun --nproc_per_node 8 -m actwm.train.cli --preset cosmos2-2b-8gpu --data STORE --out RUN
    torchrun --nproc_per_node 2 -m actwm.train.cli --preset tiny-cpu --data STORE --out RUN     # CPU, gloo
    accelerate launch --multi_gpu --num_processes 2 -m actwm.train.cli ...                      # CPU too

On a machine without GPUs the trainer always asks accelerate for CPU processes (gloo). Note that
`accelerate launch --cpu --num_processes 2` starts a single process (accelerate 1.15); use `--multi_gpu`
(or torchrun) to start several CPU processes. A launch whose WORLD_SIZE > 1 but whose accelerator
reports one process raises a ValueError instead of silently training N independent copies.

`batch_size` is per process: the global batch is `batch_size * grad_accum * processes`.
FSDP (`distributed="fsdp"`) wraps each transformer block (use_orig_params, full state dicts gathered for
checkpoints); it needs GPUs and was not exercised on the CPU-only development machine; EMA is not
supported with FSDP.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import math
import os
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from actwm.actions import ActionSpace, get_action_space
from actwm.batch import Batch
from actwm.io import atomic_write_json, atomic_write_text
from actwm.models.world_model import PRESETS as MODEL_PRESETS
from actwm.models.world_model import WorldModel, WorldModelConfig
from actwm.train import checkpoint as ckpt
from actwm.train.config import TrainConfig
from actwm.train.ema import EMA

FINAL = "final"
METRICS = "metrics.csv"
METRICS_HEADER = ("step", "loss", "lr", "action_lr", "grad_norm", "seconds")


@dataclass
class TrainResult:
    """What a training run returns.

    Attributes:
        losses: mean training loss of every optimizer step from step 1 (including the steps done
            before a resume).
        final_dir: a saved world model (`WorldModel.load(final_dir)`): `out/final` when the run reached
            `cfg.steps`, else the newest checkpoint.
        steps: optimizer steps completed.
        seconds: wall time of this call (setup included).
        start_step: the step this call resumed from (0 for a fresh run).
        out: the run directory.
    """

    losses: list[float]
    final_dir: Path
    steps: int
    seconds: float
    start_step: int = 0
    out: Path | None = None


# ------------------------------------------------------------------------------------ stateless RNG


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed that depends only on `parts` (e.g. (seed, "noise", step, micro, rank))."""
    digest = hashlib.sha256(("actwm.train:" + ":".join(map(str, parts))).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def noise_generator(seed: int, step: int, micro: int, rank: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of the diffusion time/noise/dropout of (optimizer step, micro-batch, rank)."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, "noise", step, micro, rank))


class StepIndexer:
    """Stateless clip order: which dataset items form micro-batch `m` of step `s` on rank `r`.

    Item `j` of that micro-batch is global sample `g = ((s * grad_accum + m) * world + r) * batch + j`;
    epoch `g // n` shuffles the dataset with its own seeded permutation, and the item is
    `perm_epoch[g % n]`. Every epoch covers the dataset once, and ranks never share a sample of a step.
    """

    def __init__(self, n: int, seed: int, batch_size: int, grad_accum: int, world: int) -> None:
        if n < 1:
            raise ValueError("the training dataset is empty")
        self.n, self.seed, self.batch_size, self.grad_accum, self.world = n, seed, batch_size, grad_accum, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) >= 4:
                self._perms.pop(next(iter(self._perms)))
            g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
            self._perms[epoch] = torch.randperm(self.n, generator=g)
        return self._perms[epoch]

    def indices(self, step: int, micro: int, rank: int) -> list[int]:
        g0 = ((step * self.grad_accum + micro) * self.world + rank) * self.batch_size
        return [int(self._perm(g // self.n)[g % self.n]) for g in range(g0, g0 + self.batch_size)]


class StepBatchSampler(Sampler[list[int]]):
    """Yields the index lists of every micro-batch of steps `start..stop-1` for one rank, in order."""

    def __init__(self, indexer: StepIndexer, start: int, stop: int, rank: int) -> None:
        self.indexer, self.start, self.stop, self.rank = indexer, start, stop, rank

    def __iter__(self) -> Iterator[list[int]]:
        for s in range(self.start, self.stop):
            for m in range(self.indexer.grad_accum):
                yield self.indexer.indices(s, m, self.rank)

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.indexer.grad_accum


# ------------------------------------------------------------------------------------------- model


class LossModule(nn.Module):
    """Wraps a `WorldModel` so that its training loss is `forward` (what DDP/FSDP and autocast wrap)."""

    def __init__(self, wm: WorldModel) -> None:
        super().__init__()
        self.wm = wm

    def forward(self, batch: Batch, generator: torch.Generator, action_dropout: float) -> torch.Tensor:
        """A `Batch` (video `(b, T, 3, H, W)` in [-1, 1], actions `(b, T, D)`, state `(b, T, S)`) -> scalar loss.

        The state conditions only a model with `state_dim > 0` (datasets may carry a state the model ignores).
        """
        state = batch.initial_state if self.wm.config.state_dim else None
        return self.wm.loss(batch.video, batch.actions, state, generator=generator, action_dropout=action_dropout)


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
    opt = torch.optim.AdamW(param_groups(wm, cfg), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    return opt, sched


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

    LEAD: the one switch point for the dataset normaliser API. It reads `dataset.normaliser` (an object with
    per-dimension `mean` and `std`, from the "ground" helper's `ClipDataset.normaliser`) when the dataset has
    one; until that lands it falls back to probing `dataset.normalise_actions` at 0 and 1 as an affine map
    (checked at 2). Once every dataset has `.normaliser`, delete the fallback.
    """
    normaliser = getattr(dataset, "normaliser", None)
    if normaliser is not None:
        mean, std = (np.asarray(getattr(normaliser, k), np.float64).reshape(-1) for k in ("mean", "std"))
        if mean.shape != (dim,) or std.shape != (dim,) or not np.all(np.isfinite(std) & (np.abs(std) > 1e-12)):
            raise ValueError(f"the dataset's action normaliser must give {dim} finite means and non-zero stds")
        return mean.tolist(), std.tolist()
    norm = getattr(dataset, "normalise_actions", None)
    if norm is None:
        return None
    zero, one, two = (np.asarray(norm(np.full((1, dim), v, np.float64)), np.float64)[0] for v in (0.0, 1.0, 2.0))
    scale = one - zero
    if np.any(np.abs(scale) < 1e-12) or not np.allclose(two - one, scale, rtol=1e-6, atol=1e-9):
        raise ValueError(
            "the dataset's action normalisation is not an affine per-dimension map; cannot store it in the model"
        )
    std = 1.0 / scale
    return (-zero * std).tolist(), std.tolist()


def build_dataset(cfg: TrainConfig) -> Dataset:
    """`ClipDataset(cfg.data, ...)` with the clip-sampler fields of `cfg`."""
    if cfg.data is None:
        raise ValueError("TrainConfig.data: a LeRobot store directory is required when no dataset is passed to train()")
    if not Path(cfg.data).exists():
        raise FileNotFoundError(f"TrainConfig.data: {cfg.data}: no such dataset directory")
    from actwm.data.clips import ClipDataset

    return ClipDataset(
        cfg.data,
        split=cfg.split,
        context=cfg.context,
        horizon=cfg.horizon,
        stride=cfg.stride,
        target_fps=cfg.target_fps,
        action_mode=cfg.action_mode,
        normalise=cfg.normalise,
        size=cfg.size,
    )


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
        if cfg.state_dim and cfg.state_dim != wm.config.state_dim:
            raise ValueError(
                f"TrainConfig.state_dim: {cfg.state_dim} differs from the init_from model's state_dim "
                f"{wm.config.state_dim}"
            )
        wm.action_space = space
        wm.config.action_space = space.to_dict()
        return wm
    torch.manual_seed(cfg.seed)
    overrides = dict(
        train_mode=cfg.train_mode,
        state_dim=cfg.state_dim,
        lora_rank=cfg.lora_rank,
        lora_alpha=float(cfg.lora_alpha if cfg.lora_alpha is not None else cfg.lora_rank),
    )
    overrides.update(cfg.model_overrides)
    return WorldModel.from_preset(cfg.model, space, **overrides)


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


# ------------------------------------------------------------------------------------------ logging


class MetricsLog:
    """`metrics.csv`: a header and one row per `log_every` steps, appended and flushed line by line.

    On resume the file is rewritten (atomically) with only the well-formed rows up to the resumed
    step, so a row torn by a crash or rows past the checkpoint never survive.
    """

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        rows = self._valid_rows(resume_step) if resume_step is not None and path.is_file() else []
        text = ",".join(METRICS_HEADER) + "\n" + "".join(",".join(r) + "\n" for r in rows)
        atomic_write_text(path, text)

    def _valid_rows(self, upto: int) -> list[list[str]]:
        out = []
        with open(self.path, newline="", encoding="utf-8", errors="replace") as fh:
            for row in list(csv.reader(fh))[1:]:
                if len(row) != len(METRICS_HEADER):
                    continue
                try:
                    [float(v) for v in row]
                except ValueError:
                    continue
                if int(row[0]) <= upto:
                    out.append(row)
        return out

    def append(self, values: dict[str, float]) -> None:
        line = ",".join(repr(float(values[k])) if k != "step" else str(int(values[k])) for k in METRICS_HEADER) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()


class _Trackers:
    """Optional TensorBoard / wandb logging."""

    def __init__(self, cfg: TrainConfig, out: Path) -> None:
        self.tb = self.wandb = None
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ValueError(
                    "TrainConfig.tensorboard: needs the `tensorboard` package (pip install tensorboard)"
                ) from exc
            self.tb = SummaryWriter(str(out / "tensorboard"))
        if cfg.wandb_project:
            try:
                import wandb
            except ImportError as exc:
                raise ValueError("TrainConfig.wandb_project: needs the `wandb` package (pip install wandb)") from exc
            self.wandb = wandb.init(project=cfg.wandb_project, config=cfg.to_dict(), dir=str(out), resume="allow")

    def log(self, values: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for k, v in values.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"train/{k}": v for k, v in values.items() if k != "step"}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


# ------------------------------------------------------------------------------------------ trainer


def _launched_world_size() -> int:
    for key in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if key in os.environ:
            return int(os.environ[key])
    return 1


def make_accelerator(cfg: TrainConfig):
    """An `accelerate.Accelerator` for the config (fresh state, so several runs can share a process)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState

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
    from accelerate import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig

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
    s = wm.config.state_dim
    if s and (batch.state is None or batch.state.shape[-1] != s):
        got = None if batch.state is None else tuple(batch.state.shape[1:])
        raise ValueError(f"the model embeds a state of size {s} (state_dim) but dataset item 'state' is {got}")


class Trainer:
    """One training run. `train()` is `Trainer(...).run()`; the pieces (`backward`, `apply`) are public
    for tests and custom loops.

    Attributes:
        wm: the (unwrapped) world model; model: its `LossModule` as prepared by accelerate.
        indexer: the stateless clip order; start_step: where this run starts (after a resume).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        model: WorldModel | None = None,
        dataset: Dataset | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg, self.progress, self.out = cfg, progress, Path(cfg.out)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.accelerator = make_accelerator(cfg)
        acc = self.accelerator
        self.rank, self.world, self.device = acc.process_index, acc.num_processes, acc.device
        self.fsdp = acc.distributed_type.name == "FSDP"
        if self.fsdp and cfg.ema_decay is not None:
            raise ValueError(
                "TrainConfig.ema_decay: EMA is not supported with FSDP; set ema_decay=None or distributed='ddp'"
            )
        self.dataset = dataset if dataset is not None else build_dataset(cfg)
        first = sample_batch(self.dataset)
        if model is None:
            model = build_model(cfg, dataset_action_space(self.dataset, first.actions.shape[-1]))
        self.wm = apply_train_mode(model, cfg)
        check_compatible(self.wm, first)
        record_data_facts(self.wm, cfg, self.dataset, first)
        self.action_dropout = cfg.effective_action_dropout
        self.indexer = StepIndexer(len(self.dataset), cfg.seed, cfg.batch_size, cfg.grad_accum, self.world)
        self.losses: list[float] = []
        self.start_step, state = self._resume_point()
        if state is not None:
            self.wm.load_weights(self.resumed_from / "model.safetensors")
        optimizer, self.scheduler = build_optimizer(self.wm, cfg)
        self.loss_module = LossModule(self.wm)
        self.model, self.optimizer = acc.prepare(self.loss_module, optimizer)
        self.ema = EMA(self.wm, cfg.ema_decay) if cfg.ema_decay is not None else None
        if state is not None:
            self._load_state(state)
        self._batches: Iterator[dict[str, Any]] | None = None

    # -- resume ------------------------------------------------------------------------------------
    def _resume_point(self) -> tuple[int, dict | None]:
        cfg = self.cfg
        self.resumed_from: Path | None = None
        if self.accelerator.is_main_process:
            ckpt.clean_partial(self.out)
        self.accelerator.wait_for_everyone()
        latest = ckpt.find_latest(self.out)
        if latest is not None and not cfg.resume:
            raise ValueError(
                f"TrainConfig.out: {self.out} already holds checkpoints (newest {latest.name}); pass resume=True "
                f"(--resume) to continue or choose another output directory"
            )
        if latest is None:
            return 0, None
        state = ckpt.load_train_state(latest)
        step = int(state["step"])
        if step > cfg.steps:
            raise ValueError(f"TrainConfig.steps: {cfg.steps} is below the checkpoint's step {step} ({latest})")
        old = ckpt.read_json_safe(latest / ckpt.TRAIN_CONFIG)
        changed = [
            k
            for k in ("seed", "batch_size", "grad_accum", "lr", "model", "train_mode")
            if old.get(k) != cfg.to_dict().get(k)
        ]
        if int(state.get("world_size", self.world)) != self.world:
            changed.append(f"processes {state.get('world_size')} -> {self.world}")
        if changed and self.accelerator.is_main_process:
            warnings.warn(
                f"resuming {latest} with changed settings {changed}: the run will not repeat an uninterrupted one",
                stacklevel=2,
            )
        self.resumed_from = latest
        return step, state

    def _train_state(self, step: int) -> dict[str, Any]:
        if self.fsdp:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            optim_state = FSDP.optim_state_dict(self.model, self.optimizer.optimizer)
        else:
            optim_state = self.optimizer.state_dict()
        state = {
            "step": step,
            "losses": list(self.losses),
            "optimizer": optim_state,
            "scheduler": self.scheduler.state_dict(),
            "rng": ckpt.rng_state(),
            "world_size": self.world,
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.accelerator.scaler is not None:  # fp16 loss scaling
            state["scaler"] = self.accelerator.scaler.state_dict()
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        if self.fsdp:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            optim_state = FSDP.optim_state_dict_to_load(self.model, self.optimizer.optimizer, state["optimizer"])
            self.optimizer.load_state_dict(optim_state)
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            if "ema" not in state:
                raise ValueError(f"{self.resumed_from}: checkpoint has no EMA state but TrainConfig.ema_decay is set")
            self.ema.load_state_dict(state["ema"])
        if self.accelerator.scaler is not None and "scaler" in state:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        self.losses = [float(v) for v in state["losses"]]
        ckpt.set_rng_state(state["rng"])

    # -- data --------------------------------------------------------------------------------------
    def _loader(self, start: int) -> Iterator[dict[str, Any]]:
        sampler = StepBatchSampler(self.indexer, start, self.cfg.steps, self.rank)
        loader = DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda"
        )
        return iter(loader)

    def _next_batch(self) -> Batch:
        """The next collated micro-batch, typed at the door and moved to the device."""
        return Batch.from_collated(next(self._batches)).to(self.device)

    # -- one optimizer step ------------------------------------------------------------------------
    def backward(self, step: int) -> torch.Tensor:
        """Forward/backward every micro-batch of `step` (gradients accumulate, all-reduced across ranks).

        Returns this rank's mean loss over the micro-batches (detached).
        """
        cfg = self.cfg
        if self._batches is None:
            self._batches = self._loader(step)
        torch.manual_seed(derive_seed(cfg.seed, "torch", step, self.rank))  # any global-RNG use (dropout)
        total = torch.zeros((), device=self.device)
        for m in range(cfg.grad_accum):
            batch = self._next_batch()
            gen = noise_generator(cfg.seed, step, m, self.rank, self.device)
            sync = contextlib.nullcontext() if m == cfg.grad_accum - 1 else self.accelerator.no_sync(self.model)
            with sync:
                loss = self.model(batch, gen, self.action_dropout)
                self.accelerator.backward(loss / cfg.grad_accum)
            total += loss.detach().float()
        return total / cfg.grad_accum

    def apply(self) -> float | None:
        """Clip, step the optimizer and schedule, update the EMA; returns the pre-clip gradient norm."""
        norm = None
        if self.cfg.grad_clip > 0:
            norm = float(self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        return norm

    # -- saving ------------------------------------------------------------------------------------
    def _full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """FSDP only: the gathered model state dict (on the main process)."""
        if not self.fsdp:
            return None
        state = self.accelerator.get_state_dict(self.model)
        return {k[len("wm.") :]: v for k, v in state.items() if k.startswith("wm.")}

    def _save_model(self, directory: Path, state: dict[str, torch.Tensor] | None) -> None:
        if state is None:
            self.wm.save(directory)
        else:
            save_state_dict(self.wm, state, directory)

    def save_checkpoint(self, step: int) -> Path:
        state = self._train_state(step)
        model_state = self._full_state_dict()
        path = self.out / ckpt.CHECKPOINTS / ckpt.step_name(step)
        if self.accelerator.is_main_process:
            path = ckpt.save_checkpoint(
                self.out,
                step,
                save_model=lambda d: self._save_model(d, model_state),
                train_state=state,
                train_config=self.cfg.to_dict(),
                keep_last=self.cfg.keep_last,
            )
        self.accelerator.wait_for_everyone()
        return path

    def save_final(self) -> Path:
        """Write `out/final/` (EMA weights when enabled) atomically; returns it."""
        final = self.out / FINAL
        model_state = self._full_state_dict()
        if self.accelerator.is_main_process:
            tmp = self.out / f".tmp-final-{uuid.uuid4().hex[:8]}"
            try:
                with self.ema.swap() if self.ema is not None else contextlib.nullcontext():
                    self._save_model(tmp, model_state)
                atomic_write_json(tmp / ckpt.TRAIN_CONFIG, self.cfg.to_dict())
                _replace_dir(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return final

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> TrainResult:
        """Train from `start_step` to `cfg.steps` (or stop, with a checkpoint, after step `stop_after`)."""
        cfg, acc, t0 = self.cfg, self.accelerator, time.time()
        end = cfg.steps if stop_after is None else max(self.start_step, min(cfg.steps, stop_after))
        main = acc.is_main_process
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.out / ckpt.TRAIN_CONFIG, cfg.to_dict())
        metrics = MetricsLog(self.out / METRICS, self.start_step if self.resumed_from else None) if main else None
        trackers = _Trackers(cfg, self.out) if main else None
        bar = _progress_bar(cfg.steps, self.start_step, enabled=self.progress and main)
        window: list[float] = []
        step_seconds: list[float] = []
        self.model.train()
        for frozen in (self.wm.codec, getattr(self.wm.adapter, "image_encoder", None)):
            if isinstance(frozen, nn.Module):
                frozen.eval()
        try:
            for step in range(self.start_step, end):
                tick = time.perf_counter()
                loss = self.backward(step)
                norm = self.apply()
                step_seconds.append(time.perf_counter() - tick)
                value = float(acc.reduce(loss, "mean")) if self.world > 1 else float(loss)
                self.losses.append(value)
                window.append(value)
                done = step + 1
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
                if main and (done % cfg.log_every == 0 or done == end):
                    row = {
                        "step": done,
                        "loss": sum(window) / len(window),
                        "lr": cfg.lr * lr_factor(step, cfg),
                        "action_lr": cfg.lr * cfg.action_lr_mult * lr_factor(step, cfg),
                        "grad_norm": float("nan") if norm is None else norm,
                        "seconds": sum(step_seconds) / len(step_seconds),
                    }
                    metrics.append(row)
                    trackers.log(row, done)
                    window, step_seconds = [], []
                if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == end:
                    self.save_checkpoint(done)
        finally:
            bar.close()
            if trackers is not None:
                trackers.close()
            self._batches = None
            self.wm.eval()  # callers holding the model usually sample from it next
        if end == cfg.steps:
            final_dir = self.save_final()
        else:
            final_dir = self.out / ckpt.CHECKPOINTS / ckpt.step_name(end)
            if not ckpt.is_complete(final_dir):  # stopped before any step of this call
                final_dir = self.save_checkpoint(end)
        return TrainResult(
            losses=list(self.losses),
            final_dir=final_dir,
            steps=end,
            seconds=time.time() - t0,
            start_step=self.start_step,
            out=self.out,
        )


def train(
    cfg: TrainConfig,
    *,
    model: WorldModel | None = None,
    dataset: Dataset | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Fine-tune a world model; see the module docstring.

    Args:
        cfg: the run's settings.
        model: a world model to train (default: `cfg.init_from` or the `cfg.model` preset).
        dataset: any Dataset of dicts with `video` `(T, 3, H, W)` in [0, 1], `actions` `(T, D)`
            normalised, optionally `state` `(T, S)` (default: `ClipDataset(cfg.data, ...)`).
        progress: show a tqdm bar (main process only).
        stop_after: stop (with a checkpoint) after this optimizer step, as a preemption would;
            `--resume` continues from there.
    Returns:
        TrainResult (losses per optimizer step, the final model directory, steps, seconds).
    """
    t0 = time.time()
    result = Trainer(cfg, model=model, dataset=dataset, progress=progress).run(stop_after=stop_after)
    result.seconds = time.time() - t0
    return result


# ------------------------------------------------------------------------------------------ helpers


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move directory `src` to `dst`, replacing an existing `dst` (old one renamed away first)."""
    if dst.exists():
        trash = dst.parent / f".del-{dst.name}-{uuid.uuid4().hex[:8]}"
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


def save_state_dict(wm: WorldModel, state: dict[str, torch.Tensor], directory: Path) -> None:
    """Write a gathered (FSDP) state dict of `wm` in the `WorldModel.save` format."""
    from safetensors.torch import save_file

    from actwm.io import atomic_path
    from actwm.models.world_model import CONFIG_NAME, WEIGHTS_NAME

    skip = ["codec."]
    if wm.config.image_encoder and "source" in wm.config.image_encoder:
        skip.append("adapter.image_encoder.")
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items() if not k.startswith(tuple(skip))}
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "actwm": "world_model"})
    atomic_write_json(directory / CONFIG_NAME, wm.config.to_dict())


__all__ = [
    "TrainResult",
    "Trainer",
    "train",
    "derive_seed",
    "noise_generator",
    "StepIndexer",
    "StepBatchSampler",
    "LossModule",
    "param_groups",
    "lr_factor",
    "build_optimizer",
    "build_dataset",
    "build_model",
    "dataset_action_space",
    "apply_train_mode",
    "with_lora",
    "record_data_facts",
    "sample_batch",
    "check_compatible",
    "MetricsLog",
    "make_accelerator",
]
