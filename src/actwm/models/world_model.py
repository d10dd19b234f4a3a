"""The action-conditioned world model: codec + backbone adapter + action encoder + objective.

(Over 500 lines: the one contract class of every backbone; the KVAF branch lives in actwm.models.kvaf.)

One contract for every backbone:

    wm(noisy (batch, latent_frames, C, h, w), t (batch,), cond, actions (batch, frames, D),
       state (batch, S) | None) -> raw output (batch, latent_frames, C, h, w)

where `cond = wm.condition(first_frame)` (a `FrameCondition`) and `actions` are *normalised* by the model's
`ActionSpace` (`wm.action_space.normalise(raw)`); row t of `actions` conditions pixel frame t. The action
embedding is one named branch (`"actions"`) of a `Conditioning`; every network call goes through `wm.net`.
Configs are typed dataclasses with named presets (`actwm.models.presets`); `save`/`load` write safetensors +
the config as JSON with the weights' sha256 (`actwm.models.loading`).

Inside a diffusers pipeline: `with wm.actions_for_pipeline(actions): pipe(...)` with `pipe.transformer` (or
`pipe.unet`) set to `wm.adapter.backbone` (see `actions_for_pipeline`).
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from actwm.actions import ActionSpace
from actwm.batch import Batch
from actwm.models.base import BackboneAdapter
from actwm.models.codecs import Codec
from actwm.models.conditioning import ACTIONS, Conditioning, FrameCondition, Guidance
from actwm.models.config import (
    BACKBONES,
    CONFIG_NAME,
    LORA_TARGETS,
    TRAIN_MODES,
    WEIGHTS_NAME,
    WorldModelConfig,
    check_compatible,
    family_of,
    is_tiny_encoder,
    temporal_of,
)
from actwm.models.embeddings import ActionEncoder, count_parameters
from actwm.models.kvaf import KVAF, KvafBranch, KvafConfig, kvaf_loss
from actwm.models.loading import (
    backbone_class,
    build_codec,
    build_image_encoder,
    load_pretrained_component,
    make_adapter,
    read_checkpoint_config,
    read_weights,
    subfolder_of,
    write_checkpoint,
)
from actwm.models.objectives import make_objective
from actwm.models.presets import PRESETS, TINY_PRESETS, get_preset, pretrained_config
from actwm.models.samplers import get_sampler

GuidanceSpec = float | Mapping[str | tuple[str, ...], float] | Guidance


class WorldModel(nn.Module):
    """Action-conditioned video world model around a pretrained diffusers backbone.

    Build with `WorldModel.from_preset`, `from_pretrained` (real weights) or `from_config`; persist with
    `save`/`load`.
    """

    def __init__(self, cfg: WorldModelConfig, backbone: nn.Module, codec: Codec | None, image_encoder=None) -> None:
        super().__init__()
        self.config = cfg
        self.action_space = ActionSpace.from_dict(cfg.action_space)
        self.codec = codec
        self.adapter: BackboneAdapter = make_adapter(cfg, backbone, codec, image_encoder)
        k = codec.temporal_compression if codec is not None else temporal_of(cfg)
        self.encoder = ActionEncoder(cfg.encoder_config(self.action_space.dim, self.adapter.emb_dim, k))
        self.objective = make_objective(self.adapter.objective, **cfg.objective)
        uses = cfg.conditioning.split("+")  # the KVAF stream copies the blocks before LoRA (EA-WM)
        kcfg = KvafConfig.from_dict(cfg.kvaf)
        numeric = copy.deepcopy(self.encoder) if kcfg.source == "numeric" else None  # the numeric ablation's stream
        self.kvaf = KvafBranch(self.adapter, kcfg, numeric) if KVAF in uses else None
        if cfg.train_mode == "lora":
            self._add_lora()
        self.set_train_mode(cfg.train_mode)

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls, cfg: WorldModelConfig, *, load_codec: bool = True, dtype: torch.dtype | None = None
    ) -> "WorldModel":
        """Build with a randomly initialised backbone from `cfg.backbone_config` (tiny presets, sizing, `load`).

        Pretrained VAEs and image encoders named in the config are loaded from their source when
        `load_codec` is True.
        """
        backbone = backbone_class(cfg.family).from_config(copy.deepcopy(cfg.backbone_config))
        codec = build_codec(cfg.codec, dtype) if (load_codec or cfg.codec["kind"] == "pixel") else None
        image_encoder = (
            build_image_encoder(cfg.image_encoder, dtype, cfg.family) if load_codec or is_tiny_encoder(cfg) else None
        )
        if cfg.image_encoder is not None and image_encoder is None:
            image_encoder = nn.Identity()  # placeholder for sizing without weights
        return cls(cfg, backbone, codec, image_encoder)

    @classmethod
    def from_preset(cls, name: str, action_space: str | int | ActionSpace = "nav3", **overrides: Any) -> "WorldModel":
        """A world model from a named preset. Real-size presets load the pretrained backbone from its hub id."""
        cfg = get_preset(name, action_space, **overrides)
        if cfg.source is not None:
            return cls.from_pretrained(cfg.source, backbone=cfg.backbone, action_space=action_space, config=cfg)
        return cls.from_config(cfg)

    @classmethod
    def from_pretrained(
        cls,
        source: str,
        *,
        backbone: str,
        action_space: str | int | ActionSpace = "nav3",
        config: WorldModelConfig | None = None,
        dtype: torch.dtype | None = None,
        **overrides: Any,
    ) -> "WorldModel":
        """Wrap a pretrained diffusers pipeline directory or hub id (unet/ or transformer/, vae/, image_encoder/).

        Args:
            source: hub id (e.g. "Wan-AI/Wan2.1-T2V-1.3B-Diffusers") or local directory in diffusers layout.
            backbone: "svd", "cosmos", "wan2.1" or "wan2.2".
        """
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        family = family_of(backbone)
        model = load_pretrained_component(
            backbone_class(family),
            source,
            subfolder_of(family),
            f"{backbone} backbone",
            **({"torch_dtype": dtype} if dtype else {}),
        )
        if config is None:
            config = pretrained_config(source, backbone, action_space, model, overrides)
        config.backbone_config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
        codec = build_codec(config.codec, dtype)
        image_encoder = build_image_encoder(config.image_encoder, dtype, family)
        return cls(config, model, codec, image_encoder)

    # -- trainable parts ---------------------------------------------------------------------------
    def _add_lora(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model  # optional heavy dependency: only for LoRA

        lcfg = LoraConfig(
            r=self.config.lora_rank, lora_alpha=self.config.lora_alpha, target_modules=LORA_TARGETS[self.config.family]
        )
        inject_adapter_in_model(lcfg, self.adapter.backbone)
        if self.kvaf is not None:
            inject_adapter_in_model(lcfg, self.kvaf.blocks)

    def set_train_mode(self, mode: str) -> None:
        """full: everything but frozen codec/image encoder trains; lora: LoRA + encoder; frozen: encoder only."""
        if mode not in TRAIN_MODES:
            raise ValueError(f"train mode must be one of {TRAIN_MODES}, got {mode!r}")
        for name, p in self.adapter.backbone.named_parameters():
            p.requires_grad_(mode == "full" or (mode == "lora" and "lora_" in name))
        if self.adapter.image_encoder is not None:
            self.adapter.image_encoder.requires_grad_(False)
        if self.codec is not None:
            self.codec.requires_grad_(False)
        self.encoder.requires_grad_(True)
        if self.kvaf is not None:
            self.kvaf.set_train_mode(mode, self.kvaf_stage)
            self.encoder.requires_grad_(ACTIONS in self.config.conditioning.split("+"))  # unused otherwise

    kvaf_stage = 2  # KVAF two-stage training: 1 = fusion frozen, 2 = fusion trained

    def action_parameters(self) -> list[nn.Parameter]:
        """Newly introduced parameters (action/state encoder, SVD null context): trained at 10x the lr."""
        kvaf = self.kvaf.head_parameters() + self.kvaf.fusion_parameters() if self.kvaf is not None else []
        return list(self.encoder.parameters()) + self.adapter.extra_parameters() + kvaf

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Trainable backbone parameters under the current train mode."""
        return [p for p in self.adapter.backbone.parameters() if p.requires_grad]

    # -- the contract -------------------------------------------------------------------------------
    def embed_actions(
        self, actions: torch.Tensor, state: torch.Tensor | None = None, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`(batch, frames, D)` normalised actions -> `(batch, latent_frames, emb_dim)`; `keep` `(batch,)` bools
        zero the embedding of dropped samples (action dropout / unconditional branch)."""
        emb = self.encoder(actions, state)  # validates dimension, frame rule and finiteness
        if keep is not None:
            emb = emb * keep.to(emb.dtype).view(-1, 1, 1)
        return emb

    def conditioning(
        self,
        actions: torch.Tensor,
        state: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
        kvaf: Mapping[str, torch.Tensor] | None = None,
    ) -> Conditioning:
        """The branches for `(batch, frames, D)` normalised actions: `"actions"` (unless the model is KVAF-only) and
        `"kvaf"` when its stream inputs are given (`actwm.models.kvaf.kvaf_inputs`)."""
        branches: dict = {}
        if ACTIONS in self.config.conditioning.split("+"):
            branches[ACTIONS] = self.embed_actions(actions, state, keep)
        if kvaf is not None:
            branches[KVAF] = kvaf
        return Conditioning(branches)

    def net(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: FrameCondition,
        conditioning: Conditioning | None,
        copies: int = 1,
    ) -> torch.Tensor:
        """The one network call: `(b, f, C, h, w)`, `(b,)` -> raw output `(b, f, C, h, w)` under `conditioning`.

        `copies` > 1: the network runs on that many stacked copies of `x` and `t` (`cond` and `conditioning` given
        for batch `copies * b`), returning `(copies * b, f, C, h, w)`: the passes of a guided level in one forward."""
        with self.adapter.conditioned(conditioning):
            if copies == 1:
                return self.adapter(x, t, cond)
            return self.adapter.forward_copies(x, t, cond, copies)

    def forward(
        self,
        noisy: torch.Tensor,
        t: torch.Tensor,
        cond: FrameCondition,
        actions: torch.Tensor,
        state: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(noisy `(b, f, C, h, w)`, t `(b,)`, cond, actions `(b, T, D)`, state `(b, S)`) -> `(b, f, C, h, w)`."""
        return self.net(noisy, t, cond, self.conditioning(actions, state, keep))

    def forward_bare(self, noisy: torch.Tensor, t: torch.Tensor, cond: FrameCondition) -> torch.Tensor:
        """The unwrapped backbone (no conditioning branch)."""
        return self.net(noisy, t, cond, None)

    @contextlib.contextmanager
    def actions_for_pipeline(self, actions: torch.Tensor, state: torch.Tensor | None = None) -> Iterator[None]:
        """Condition the wrapped backbone on actions while a diffusers pipeline runs it.

        Usage (the pipeline you already use, with our backbone in it)::

            pipe = WanPipeline(transformer=wm.adapter.backbone, vae=..., text_encoder=..., ...)
            with wm.actions_for_pipeline(actions):        # (batch, num_frames, D) normalised actions
                video = pipe(prompt, num_frames=num_frames, ...).frames

        `actions` has one row per pixel frame the pipeline generates (`num_frames`) and one sequence per video
        (batch = prompts * num_videos_per_prompt, or 1 for all). The branch follows the pipeline's own calls:
        batch doubled for classifier-free guidance (SVD), per-sample or per-token timesteps (Wan,
        `expand_timesteps`), per-frame timesteps (Cosmos). Zero actions at init leave the pipeline's output
        bit-identical to the bare backbone's.
        """
        with torch.no_grad():
            conditioning = self.conditioning(actions, state)
        with self.adapter.conditioned(conditioning):
            yield

    # -- pixels <-> latents -----------------------------------------------------------------------
    def _require_codec(self) -> Codec:
        if self.codec is None:
            raise ValueError("this world model was built without its codec (load_codec=False)")
        return self.codec

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """`(b, T, 3, H, W)` pixels in [-1, 1] -> `(b, f, C, h, w)` latents."""
        with torch.no_grad():
            return self._require_codec().encode(video)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """`(b, f, C, h, w)` latents -> `(b, T, 3, H, W)` pixels in [-1, 1]."""
        with torch.no_grad():
            return self._require_codec().decode(latents)

    def condition(
        self, first_frame: torch.Tensor, first_latent: torch.Tensor | None = None, frames: int | None = None
    ) -> FrameCondition:
        """Conditioning for `(b, 3, H, W)` start frames in [-1, 1].

        `frames`: pixel frames of the clip to generate; needed by channel-concat backbones (Wan 2.1 I2V),
        whose condition is the codec's latents of (first frame, grey frames...) over the whole clip.
        """
        if first_frame.ndim != 4 or first_frame.shape[1] != 3:
            raise ValueError(f"first frame must be (batch, 3, height, width), got {tuple(first_frame.shape)}")
        if first_latent is None:
            first_latent = self.encode(first_frame.unsqueeze(1))[:, 0]
        extra = {}
        if self.adapter.concat_condition:
            if frames is None:
                raise ValueError(f"{self.config.backbone}: a channel-concat backbone needs condition(..., frames=T)")
            padded = torch.zeros(
                first_frame.shape[0], frames, *first_frame.shape[1:], dtype=first_frame.dtype, device=first_frame.device
            )
            padded[:, 0] = first_frame
            extra["padded_latents"] = self.encode(padded)
        with torch.no_grad():
            return self.adapter.condition(first_frame, first_latent, **extra)

    # -- training ---------------------------------------------------------------------------------
    def loss(
        self,
        video: torch.Tensor | Batch,
        actions: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        action_dropout: float = 0.0,
        kvaf: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The backbone's own pretraining loss on a clip (a KVAF model: EA-WM Eq. 8, `actwm.models.kvaf.kvaf_loss`,
        its parts in `wm.last_losses`; `kvaf` `(b, T, 3, H, W)` the clip's KVAF video, or the Batch's).

        Call as `wm.loss(batch, generator=..., action_dropout=...)` with an `actwm.batch.Batch` (its video,
        actions and `initial_state` are used), or as `wm.loss(video, actions, state, generator, action_dropout)`.

        Args:
            video: `(b, T, 3, H, W)` pixels in [-1, 1], frame 0 is the condition; or a `Batch`.
            actions: `(b, T, D)` normalised actions (None with a `Batch`).
            state: `(b, S)` initial state or None.
            action_dropout: probability of dropping a sample's action embedding (for guidance).
        Returns:
            scalar mean loss.
        """
        if isinstance(video, Batch):
            if actions is not None or state is not None:
                raise ValueError("wm.loss(batch): actions and state come from the Batch; do not pass them too")
            state = video.initial_state if self.encoder.cfg.state_dim > 0 else None  # the Batch may carry unused state
            kvaf = video.kvaf if kvaf is None else kvaf
            video, actions = video.video, video.actions
        if actions is None or video.shape[:2] != actions.shape[:2]:
            got = None if actions is None else tuple(actions.shape[:2])
            raise ValueError(f"video {tuple(video.shape[:2])} and actions {got} disagree on (batch, frames)")
        if self.kvaf is not None:
            total, self.last_losses = kvaf_loss(self, video, actions, state, kvaf, generator, action_dropout)
            return total
        x0 = self.encode(video)
        cond = self.condition(video[:, 0], x0[:, 0], frames=video.shape[1])
        b, device = x0.shape[0], x0.device
        t = self.objective.sample_t(b, generator=generator, device=device)
        noise = torch.randn(x0.shape, generator=generator, device=device)
        keep = None
        if action_dropout > 0:
            keep = torch.rand(b, generator=generator, device=device) >= action_dropout
        frame_mask = None
        if self.adapter.replaces_first_frame:
            frame_mask = torch.ones(x0.shape[1], dtype=torch.bool, device=device)
            frame_mask[0] = False
        conditioning = self.conditioning(actions, state, keep)
        net = lambda x, tt: self.net(x, tt, cond, conditioning)  # noqa: E731
        return self.objective.loss(net, x0, t, noise, frame_mask).mean()

    # -- generation -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        first_frame: torch.Tensor,
        actions: torch.Tensor,
        state: torch.Tensor | None = None,
        *,
        steps: int = 20,
        sampler: str = "euler",
        seeds: list[int] | None = None,
        guidance: GuidanceSpec = 1.0,
        guidance_interval: tuple[float, float] | None = None,
        return_latents: bool = False,
        conditioning: Conditioning | None = None,
    ) -> torch.Tensor:
        """Imagine `T` frames from `(b, 3, H, W)` start frames under `(b, T, D)` normalised actions.

        Each sample's starting noise comes from its own seed, so a batch equals its samples run one by one.
        Classifier-free guidance drops conditioning branches: `guidance=w` (float) guides the `"actions"` branch,
        `guidance={"actions": w1, "other": w2}` drops each branch in its own pass, a tuple key drops several
        together; the branch-free prediction is the one without that branch's contribution, as the passive stage
        and action dropout train it. `guidance_interval=(lo, hi)` guides only at noise levels in `(lo, hi]` (flow
        time t, or EDM sigma), as in Kynkaanniemi et al. 2024, decided against the schedule before the loop. The
        conditional and branch-dropped passes of a guided level run as one batched forward.
        `conditioning`: extra branches merged with the action branch (e.g. KVAF).
        Returns `(b, T, 3, H, W)` in [-1, 1] (frame 0 is the given frame), or latents if `return_latents`.
        """
        b = first_frame.shape[0]
        if actions.ndim != 3 or actions.shape[0] != b:
            raise ValueError(f"actions must be (batch={b}, frames, D), got {tuple(actions.shape)}")
        plan = Guidance.of(guidance, guidance_interval)
        codec = self._require_codec()
        f, c, h, w = codec.latent_shape(actions.shape[1], first_frame.shape[-2], first_frame.shape[-1])
        self.encoder.latent_frames(actions.shape[1])
        seeds = list(range(b)) if seeds is None else list(seeds)
        if len(seeds) != b:
            raise ValueError(f"got {len(seeds)} seeds for a batch of {b}")
        x = torch.cat(
            [
                self.objective.prior((1, f, c, h, w), generator=torch.Generator(device="cpu").manual_seed(s))
                for s in seeds
            ]
        ).to(first_frame.device)
        cond = self.condition(first_frame, frames=actions.shape[1])
        branches = self.conditioning(actions, state)
        if conditioning is not None:
            branches = Conditioning({**branches.branches, **conditioning.branches})
        net = self.guided_net(cond, branches, plan, steps)
        latents = get_sampler(sampler)(self.objective, net, x, steps)
        if self.adapter.replaces_first_frame:
            latents[:, 0] = cond.latent
        if return_latents:
            return latents
        video = codec.decode(latents).clamp(-1, 1)
        video[:, 0] = first_frame
        return video

    def guided_net(self, cond: FrameCondition, branches: Conditioning, plan: Guidance, steps: int):
        """The sampler's `net(x, t, level)`: conditional at unguided levels; at guided levels the conditional and
        each group-dropped pass in one forward of batch `(1 + groups) * b`, combined by `plan`."""
        levels = self.objective.schedule(steps, dtype=torch.float64).tolist()
        guided = plan.guided_levels(levels)
        if any(guided):
            stacked = Conditioning.stack([branches] + [branches.without(g) for g in plan.groups], like=branches)
            passes = 1 + len(plan.groups)
            cond_n = cond.repeat(passes)

        def net(x: torch.Tensor, t: torch.Tensor, level: int) -> torch.Tensor:
            if not guided[level]:
                return self.net(x, t, cond, branches)
            out = self.net(x, t, cond_n, stacked, copies=passes).chunk(passes)
            return plan.combine(out[0], out[1:])

        return net

    # -- persistence ------------------------------------------------------------------------------
    def external_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes loaded from a pretrained source rather than saved (frozen VAE / CLIP)."""
        prefixes = ["codec."]
        if self.config.image_encoder and "source" in self.config.image_encoder:
            prefixes.append("adapter.image_encoder.")
        return tuple(prefixes)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `model.safetensors` and `config.json` (with the weights' sha256), atomically, to `directory`."""
        skip = self.external_prefixes()
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(skip)}
        return write_checkpoint(directory, state, self.config.to_dict())

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        *,
        backbone: str | None = None,
        action_space: str | ActionSpace | None = None,
        dtype: torch.dtype | None = None,
    ) -> "WorldModel":
        """Load a saved world model; `backbone` / `action_space` (if given) must match the checkpoint.

        The weights' sha256 recorded in config.json is verified; a corrupted, truncated or mismatched weights
        file raises ValueError naming the file.
        """
        directory = Path(directory)
        cfg, sha256 = read_checkpoint_config(directory)
        check_compatible(cfg, backbone, action_space, where=str(directory))
        state = read_weights(directory / WEIGHTS_NAME, sha256)
        model = cls.from_config(cfg, dtype=dtype)
        model.load_state(state, directory / WEIGHTS_NAME)
        return model

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a `model.safetensors` file strictly (except the external frozen parts)."""
        self.load_state(read_weights(path), path)

    def load_state(self, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
        """Load a state dict read from `path`; missing, unexpected or mis-shaped tensors raise ValueError."""
        own = self.state_dict()
        wrong = [
            f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
            for k, v in state.items()
            if k in own and v.shape != own[k].shape
        ]
        if wrong:
            raise ValueError(f"{path}: weights are for another model (shape mismatch: {wrong[:3]})")
        missing, unexpected = self.load_state_dict(state, strict=False)
        skip = self.external_prefixes()
        missing = [k for k in missing if not k.startswith(skip)]
        if missing or unexpected:
            raise ValueError(
                f"{path}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )

    def describe(self) -> dict[str, Any]:
        """Sizes and the adapter's stated assumptions."""
        spec = self.adapter.spec(self.codec) if self.codec is not None else None
        return {
            "backbone": self.config.backbone,
            "preset": self.config.preset,
            "action_space": self.action_space.name,
            "action_dim": self.action_space.dim,
            "base_params": count_parameters(self.adapter.backbone),
            "action_params": count_parameters(self.encoder),
            "injection_sites": [site.name for site in self.adapter.sites],
            "spec": asdict(spec) if spec is not None else None,
        }


__all__ = [
    "WorldModel",
    "WorldModelConfig",
    "PRESETS",
    "TINY_PRESETS",
    "get_preset",
    "check_compatible",
    "family_of",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "BACKBONES",
    "TRAIN_MODES",
    "LORA_TARGETS",
    "build_codec",
    "load_pretrained_component",
]
