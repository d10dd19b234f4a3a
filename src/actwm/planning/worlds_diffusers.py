"""A diffusers image-to-video pipeline driven by text prompts: the zero-shot world model (World-In-World's baseline).

    world = DiffusersI2VWorld.from_pretrained("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")   # or a local directory
    world = make_world_model("diffusers-i2v:/models/wan21-i2v")                          # the same, by spec
    actwm plan --task imagenav --world-model diffusers-i2v:/models/wan21-i2v --proposals 4 --horizon 4 ...

For M candidate plans it writes one prompt per plan with World-In-World's templates (`translate.text_prompt`:
"The camera moves forward by 0.25m. The camera rotates left by 22.5°. ..."), runs the pipeline ONCE batched
over the M prompts (one `torch.Generator` per candidate, so a candidate's frames do not depend on its batch),
generates `1 + k * ceil(L * frames_per_action / k)` frames (the VAE's temporal rule, k = 4 for Wan), keeps
the frames that close each agent action (evenly spaced: frame `round(l * (F - 1) / L)` closes action l),
and resizes them to the task's image size.

Loading is offline: a directory with `model_index.json`, or a hub id already in the local Hugging Face cache
(download it first with `huggingface-cli download ID`). The fingerprint records the source and the sha256 of
every `*.safetensors` file of the pipeline directory.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from actwm.checks import require, require_at_least
from actwm.pixels import signed_to_uint8, unit_to_signed
from actwm.planning.interface import register_world_model
from actwm.planning.translate import text_prompt
from actwm.planning.worlds import VideoWorld


@dataclass(frozen=True)
class I2VConfig:
    """Sampling settings of the zero-shot pipeline.

    Attributes:
        steps: denoising steps (`num_inference_steps`).
        guidance: classifier-free guidance scale (Wan's default 5.0; 1.0 disables the negative branch).
        frames_per_action: generated frames per agent action before the VAE's 1 + k*n rounding.
        height, width: generation size (None: the task's size rounded up to the pipeline's multiple); the
            frames are resized to the task's size afterwards.
        negative_prompt: the negative prompt used with guidance > 1.
        max_sequence_length: text tokens (Wan's transformer expects 512 with an image encoder).
    """

    steps: int = 30
    guidance: float = 5.0
    frames_per_action: int = 4
    height: int | None = None
    width: int | None = None
    negative_prompt: str = ""
    max_sequence_length: int = 512

    def __post_init__(self) -> None:
        require_at_least(self, 1, "steps", "frames_per_action", "max_sequence_length")
        require(math.isfinite(self.guidance) and self.guidance >= 0, self, "guidance", "a finite number >= 0")
        require_at_least(self, 8, "height", "width", optional=True)  # pixels

    def fingerprint(self) -> dict[str, Any]:
        """The settings a result's fingerprint records: every field but `max_sequence_length`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "max_sequence_length"}


def resolve_pipeline_dir(source: str | Path) -> Path:
    """A pipeline directory or a hub id in the local cache -> the directory holding `model_index.json`.

    Raises FileNotFoundError naming what to provide when neither exists (nothing is downloaded).
    """
    path = Path(source)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"diffusers-i2v: {path} has no model_index.json; pass a diffusers pipeline directory "
                "(e.g. a snapshot of Wan-AI/Wan2.1-I2V-14B-480P-Diffusers) or a cached hub id"
            )
        return path
    if str(source).startswith(("/", ".", "~")) or str(source).count("/") > 1:
        raise FileNotFoundError(
            f"diffusers-i2v: pipeline directory {path} not found; pass a diffusers pipeline directory holding "
            "model_index.json or a hub id in the local Hugging Face cache"
        )
    from huggingface_hub import snapshot_download  # heavy optional client: only when a hub id is given

    try:
        return Path(snapshot_download(str(source), local_files_only=True))
    except Exception as exc:  # not cached, invalid id, offline: one clear message
        raise FileNotFoundError(
            f"diffusers-i2v: weights {str(source)!r} not found: not a local directory and not in the Hugging Face "
            f"cache. Download them first (`huggingface-cli download {source}`) or pass a directory holding the "
            "pipeline's model_index.json"
        ) from exc


def safetensors_sha256(directory: str | Path) -> dict[str, str]:
    """sha256 of every `*.safetensors` file under `directory`, keyed by relative path (sorted)."""
    root = Path(directory)
    out = {}
    for path in sorted(root.rglob("*.safetensors")):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out[path.relative_to(root).as_posix()] = digest.hexdigest()
    return out


def state_sha256(pipe: Any) -> str:
    """sha256 over the state dicts of a pipeline's torch modules (for pipelines built from parts)."""
    digest = hashlib.sha256()
    for name, module in sorted(pipe.components.items()):
        if isinstance(module, torch.nn.Module):
            for key, value in sorted(module.state_dict().items()):
                digest.update(f"{name}.{key}".encode())
                digest.update(value.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()


def closing_indices(num_frames: int, horizon: int) -> np.ndarray:
    """`(L + 1,)` indices into a video of `num_frames`: the start frame, then the frame closing each action."""
    return np.round(np.arange(horizon + 1) * (num_frames - 1) / horizon).astype(np.int64)


class DiffusersI2VWorld(VideoWorld):
    """A diffusers image-to-video pipeline (Wan 2.1 I2V and alike) behind the planning interface, text control.

    Args:
        pipe: a `WanImageToVideoPipeline` (or any pipeline with the same call signature and a tokenizer,
            text encoder and VAE).
        config: sampling settings (`I2VConfig`).
        seed: base seed (the loop's `reset(seed)` overrides it per episode).
        source: where the weights came from (directory or hub id), recorded in the fingerprint.
    """

    name = "diffusers-i2v"
    control = "text"
    vocabularies = ("nav_discrete",)

    def __init__(self, pipe: Any, config: I2VConfig | None = None, seed: int = 0, source: str | None = None) -> None:
        for part in ("tokenizer", "text_encoder", "vae", "transformer"):
            if getattr(pipe, part, None) is None:
                raise ValueError(f"diffusers-i2v: the pipeline has no {part}; text prompts need all of them")
        self.pipe = pipe
        self.pipe.set_progress_bar_config(disable=True)
        self.config = config or I2VConfig()
        self.source = source
        self.directory: Path | None = None
        self._weights: dict[str, str] | str | None = None
        super().__init__(frame_step=None, seed=seed)

    @classmethod
    def from_pretrained(cls, source: str | Path, config: I2VConfig | None = None, seed: int = 0, **kwargs: Any):
        """Load `WanImageToVideoPipeline` from a directory or a cached hub id (offline; float32 on CPU)."""
        from diffusers import WanImageToVideoPipeline  # heavy: imported only when a pipeline is loaded

        directory = resolve_pipeline_dir(source)
        pipe = WanImageToVideoPipeline.from_pretrained(str(directory), local_files_only=True, **kwargs)
        world = cls(pipe, config=config, seed=seed, source=str(source))
        world.directory = directory
        return world

    # ------------------------------------------------------------------------------------------ generation

    def num_frames(self, horizon: int) -> int:
        """Frames to generate for `horizon` agent actions: `1 + k * ceil(L * frames_per_action / k)`."""
        k = int(getattr(self.pipe, "vae_scale_factor_temporal", 1))
        return 1 + k * math.ceil(horizon * self.config.frames_per_action / k)

    def generation_size(self, height: int, width: int) -> tuple[int, int]:
        """The pipeline's (height, width): the configured one, or the task's rounded up to its multiple."""
        patch = self.pipe.transformer.config.patch_size
        mh = int(self.pipe.vae_scale_factor_spatial) * int(patch[1])
        mw = int(self.pipe.vae_scale_factor_spatial) * int(patch[2])
        h = self.config.height or -(-height // mh) * mh
        w = self.config.width or -(-width // mw) * mw
        return h, w

    def controls(self, plans: np.ndarray) -> tuple[Any, int]:
        """Plans `(M, L)` -> ({"prompts": M strings, "horizon": L}, 1 frame per action after `generate`)."""
        vocab = self.task.vocabulary
        return {"prompts": [text_prompt(vocab, plan) for plan in plans], "horizon": int(plans.shape[1])}, 1

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> `(M, max_sequence_length, C)` text embeddings, as the Wan pipelines compute them (padded
        to max length, embeddings past each prompt's tokens zeroed). Done here because the pipelines' own text
        cleaning needs the optional `ftfy` package; our templated prompts need no cleaning."""
        n = self.config.max_sequence_length
        tok = self.pipe.tokenizer(
            prompts,
            padding="max_length",
            max_length=n,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = next(self.pipe.text_encoder.parameters()).device
        hidden = self.pipe.text_encoder(tok.input_ids.to(device), tok.attention_mask.to(device)).last_hidden_state
        keep = tok.attention_mask.to(hidden.device).bool()[..., None]
        return hidden.masked_fill(~keep, 0.0).to(self.pipe.transformer.dtype)

    @torch.no_grad()
    def generate(self, first_frame: torch.Tensor, controls: dict[str, Any], seeds: list[int]) -> torch.Tensor:
        """`(1, 3, H, W)` in [-1, 1], M prompts -> `(M, 1 + L, 3, H, W)` in [-1, 1]: start + closing frames."""
        # 1. inputs: the start frame as an image, prompt embeddings, one generator per candidate
        height, width = first_frame.shape[-2:]
        image = Image.fromarray(signed_to_uint8(first_frame[0]))
        prompts, horizon = controls["prompts"], controls["horizon"]
        embeds = self.encode_prompts(prompts)
        negative = None
        if self.config.guidance > 1.0:
            negative = self.encode_prompts([self.config.negative_prompt] * len(prompts))
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        # 2. one batched pipeline call over the M prompts
        gen_h, gen_w = self.generation_size(int(height), int(width))
        frames_total = self.num_frames(horizon)
        video = self.pipe(
            image,
            prompt_embeds=embeds,
            negative_prompt_embeds=negative,
            height=gen_h,
            width=gen_w,
            num_frames=frames_total,
            num_inference_steps=self.config.steps,
            guidance_scale=self.config.guidance,
            generator=generators,
            output_type="pt",
            max_sequence_length=self.config.max_sequence_length,
        ).frames  # (M, F, 3, gen_h, gen_w) in [0, 1]
        # 3. the frames that close each action, at the task's size
        video = video[:, closing_indices(video.shape[1], horizon)].float().cpu()
        m, t = video.shape[:2]
        if (gen_h, gen_w) != (height, width):
            flat = F.interpolate(video.flatten(0, 1), size=(int(height), int(width)), mode="bilinear", antialias=True)
            video = flat.unflatten(0, (m, t))
        return unit_to_signed(video.clamp(0, 1))

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        if self._weights is None:  # hashing large weights once per run
            self._weights = safetensors_sha256(self.directory) if self.directory else state_sha256(self.pipe)
        out.update(
            source=self.source,
            pipeline=type(self.pipe).__name__,
            weights_sha256=self._weights,
            sampling=self.config.fingerprint(),
            prompt_templates="world-in-world",
        )
        return out


@register_world_model("diffusers-i2v")
def _diffusers_i2v_factory(source: str, rollout_cfg: Any = None, **options: Any) -> DiffusersI2VWorld:
    """`diffusers-i2v:DIR_OR_HUB_ID`; the runner's rollout settings give the denoising steps and the seed."""
    if rollout_cfg is not None:
        options.setdefault("config", I2VConfig(steps=int(rollout_cfg.steps)))
        options.setdefault("seed", int(getattr(rollout_cfg, "seed", 0) or 0))
    return DiffusersI2VWorld.from_pretrained(source, **options)
