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
   enabled), loadable with `WorldModel.load`. `--resume` continues from the newest checkpoint that
   matches its checksums (a corrupt newer one is set aside with a warning); leftovers of killed writes
   are removed at the start and the end of a run.

Each collated micro-batch becomes an `actwm.batch.Batch` at the DataLoader's door (pixels mapped to
[-1, 1], shapes checked) and is passed on to the loss. The pieces live in `sampling` (stateless clip
order and noise), `setup` (accelerator, dataset, model, optimizer, speed switches), `logs` (metrics.csv,
trackers, bar), `checkpoint` and `saving` (final model); this module holds the loop.

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
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.utils.data import DataLoader, Dataset

from actwm.batch import Batch
from actwm.io import atomic_write_json, remove_temp_files
from actwm.models.world_model import WEIGHTS_NAME, WorldModel
from actwm.train import checkpoint as ckpt
from actwm.train.config import TrainConfig
from actwm.train.ema import EMA
from actwm.train.kvaf_data import with_kvaf
from actwm.train.logs import MetricsLog, StepLog
from actwm.train.sampling import StepBatchSampler, StepIndexer, derive_seed, noise_generator
from actwm.train.saving import FINAL, clean_final_leftovers, save_state_dict, write_final
from actwm.train.setup import (
    LR_SETTINGS,
    LossModule,
    apply_config_lrs,
    apply_speed_switches,
    apply_train_mode,
    attention_context,
    build_dataset,
    build_model,
    build_optimizer,
    check_compatible,
    dataset_action_space,
    dataset_normalisation,
    lr_factor,
    make_accelerator,
    param_groups,
    record_data_facts,
    sample_batch,
    with_lora,
)


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
        step_seconds: wall seconds of each optimizer step of this call; the first includes one-off costs
            (torch.compile's compilation with `compile=True`), see `steady_seconds_per_step`.
    """

    losses: list[float]
    final_dir: Path
    steps: int
    seconds: float
    start_step: int = 0
    out: Path | None = None
    step_seconds: list[float] = field(default_factory=list)

    @property
    def first_step_seconds(self) -> float | None:
        """The first step of this call (with compilation when compiled); None when it ran no step."""
        return self.step_seconds[0] if self.step_seconds else None

    @property
    def steady_seconds_per_step(self) -> float | None:
        """Median seconds of this call's steps after the first (the first when it ran one): what a further
        step costs on this machine, one-off compilation excluded; None when it ran no step."""
        rest = self.step_seconds[1:] or self.step_seconds
        return statistics.median(rest) if rest else None


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
        self.dataset = with_kvaf(dataset if dataset is not None else build_dataset(cfg), cfg)
        first = sample_batch(self.dataset)
        if model is None:
            model = build_model(cfg, dataset_action_space(self.dataset, first.actions.shape[-1]))
        self.wm = apply_train_mode(model, cfg)
        apply_speed_switches(self.wm, cfg, self.device)
        check_compatible(self.wm, first)
        record_data_facts(self.wm, cfg, self.dataset, first)
        self.action_dropout = cfg.effective_action_dropout
        self.indexer = StepIndexer(len(self.dataset), cfg.seed, cfg.batch_size, cfg.grad_accum, self.world)
        self.losses: list[float] = []
        self.step_seconds: list[float] = []  # this call's steps (wall), for TrainResult
        self.start_step, state = self._resume_point()
        if state is not None:
            self._load_weights(self.resumed_from)
        optimizer, self.scheduler = build_optimizer(self.wm, cfg)
        self.loss_module = LossModule(self.wm)
        self.model, self.optimizer = acc.prepare(self.loss_module, optimizer)
        self.ema = EMA(self.wm, cfg.ema_decay) if cfg.ema_decay is not None else None
        if state is not None:
            self._load_state(state)
        self._batches: Iterator[dict[str, Any]] | None = None

    # -- resume ------------------------------------------------------------------------------------
    def _resume_point(self) -> tuple[int, dict | None]:
        """(first step, training state or None): 1. clean leftovers of killed writes, 2. set corrupt newest
        checkpoints aside (`--resume`), 3. read the newest good checkpoint's state."""
        cfg, main = self.cfg, self.accelerator.is_main_process
        self.resumed_from: Path | None = None
        if main:
            clean_leftovers(self.out)
            if cfg.resume:
                ckpt.resume_candidate(self.out, warn=warn_line)
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
        if main:
            self._warn_changed_settings(latest, state)
        self.resumed_from = latest
        return step, state

    def _warn_changed_settings(self, latest: Path, state: dict[str, Any]) -> None:
        old = ckpt.read_json_safe(latest / ckpt.TRAIN_CONFIG)
        new = self.cfg.to_dict()
        keys = ("seed", "batch_size", "grad_accum", "model", "train_mode", "steps", *LR_SETTINGS, "grad_clip")
        changed = [k for k in keys if old.get(k) != new[k]]
        if int(state.get("world_size", self.world)) != self.world:
            changed.append(f"processes {state.get('world_size')} -> {self.world}")
        if changed:
            warnings.warn(
                f"resuming {latest} with changed settings {changed} (this run's values apply from here on): the run "
                "will not repeat an uninterrupted one",
                stacklevel=3,
            )

    def _load_weights(self, ckpt_dir: Path) -> None:
        path = ckpt_dir / WEIGHTS_NAME
        try:
            self.wm.load_weights(path)
        except (RuntimeError, SafetensorError, OSError) as exc:
            raise ValueError(
                f"{path}: cannot be loaded into the {self.cfg.model} model of this run "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from exc

    def _train_state(self, step: int) -> dict[str, Any]:
        if self.fsdp:
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
            optim_state = FSDP.optim_state_dict_to_load(self.model, self.optimizer.optimizer, state["optimizer"])
            self.optimizer.load_state_dict(optim_state)
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        apply_config_lrs(self.optimizer, self.scheduler, self.cfg)
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
            with sync, attention_context(cfg):
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
        model_state = self._full_state_dict()
        if self.accelerator.is_main_process:

            def save_model(directory: Path) -> None:
                with self.ema.swap() if self.ema is not None else contextlib.nullcontext():
                    self._save_model(directory, model_state)

            write_final(self.out, save_model, self.cfg.to_dict(), ckpt.TRAIN_CONFIG)
        self.accelerator.wait_for_everyone()
        return self.out / FINAL

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> TrainResult:
        """Train from `start_step` to `cfg.steps` (or stop, with a checkpoint, after step `stop_after`)."""
        cfg, t0 = self.cfg, time.time()
        end = cfg.steps if stop_after is None else max(self.start_step, min(cfg.steps, stop_after))
        main = self.accelerator.is_main_process
        # 1. the run directory and its config
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.out / ckpt.TRAIN_CONFIG, cfg.to_dict())
        log = StepLog(cfg, self.out, self.start_step, self.resumed_from is not None, main, self.progress)
        # 2. the steps (frozen parts stay in eval mode)
        self._set_train_mode()
        try:
            for step in range(self.start_step, end):
                self._step(step, end, log)
        finally:
            log.close()
            self._batches = None
            self.wm.eval()  # callers holding the model usually sample from it next
        # 3. the final model, or a checkpoint where this call stops early; no hidden leftovers
        final_dir = self._finish(end)
        if main:
            clean_leftovers(self.out)
        return TrainResult(
            list(self.losses), final_dir, end, time.time() - t0, self.start_step, self.out, list(self.step_seconds)
        )

    def _set_train_mode(self) -> None:
        self.model.train()
        for frozen in (self.wm.codec, getattr(self.wm.adapter, "image_encoder", None)):
            if isinstance(frozen, nn.Module):
                frozen.eval()

    def _step(self, step: int, end: int, log: StepLog) -> None:
        """One optimizer step (0-based `step`): forward/backward, update, log, checkpoint when due."""
        cfg = self.cfg
        tick = time.perf_counter()
        loss = self.backward(step)
        norm = self.apply()
        seconds = time.perf_counter() - tick
        self.step_seconds.append(seconds)
        value = float(self.accelerator.reduce(loss, "mean")) if self.world > 1 else float(loss)
        self.losses.append(value)
        done = step + 1
        lr = cfg.lr * lr_factor(step, cfg)
        log.record(done, end, value, seconds, (lr, lr * cfg.action_lr_mult), norm)
        if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == end:
            self.save_checkpoint(done)

    def _finish(self, end: int) -> Path:
        if end == self.cfg.steps:
            return self.save_final()
        final_dir = self.out / ckpt.CHECKPOINTS / ckpt.step_name(end)
        if not ckpt.is_complete(final_dir):  # stopped before any step of this call
            final_dir = self.save_checkpoint(end)
        return final_dir


def clean_leftovers(out: Path) -> None:
    """Remove what killed writers leave in a run directory: `checkpoints/.tmp-*`, `.del-*`, `.latest.*.tmp`,
    `out/.tmp-final-*` and hidden `atomic_path` temp files in `out/` and `out/final/`."""
    ckpt.clean_partial(out)
    clean_final_leftovers(out)
    remove_temp_files(out)
    remove_temp_files(out / FINAL)


def warn_line(message: str) -> None:
    """A one-line warning on stderr."""
    print(f"actwm train: warning: {message}", file=sys.stderr, flush=True)


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
    "dataset_normalisation",
    "apply_train_mode",
    "with_lora",
    "record_data_facts",
    "sample_batch",
    "check_compatible",
    "MetricsLog",
    "make_accelerator",
    "save_state_dict",
    "clean_leftovers",
]
