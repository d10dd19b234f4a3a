"""`SAM2Tracker`: mask tracking with the `sam2` package (Meta's Segment Anything 2) video predictor, built
from a config and a checkpoint file, or from a Hugging Face hub id resolved through the local cache.
`sam2` is an optional dependency, imported when a tracker is built."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from actwm.checks import require
from actwm.eval.tracker_base import check_track_inputs

__all__ = ["SAM2Config", "SAM2Tracker", "SAM2_HUB_IDS"]

SAM2_HUB_IDS: dict[str, tuple[str, str]] = {
    # hub id -> (config inside the sam2 package, checkpoint file name in the hub repo)
    "facebook/sam2-hiera-tiny": ("configs/sam2/sam2_hiera_t.yaml", "sam2_hiera_tiny.pt"),
    "facebook/sam2-hiera-small": ("configs/sam2/sam2_hiera_s.yaml", "sam2_hiera_small.pt"),
    "facebook/sam2-hiera-base-plus": ("configs/sam2/sam2_hiera_b+.yaml", "sam2_hiera_base_plus.pt"),
    "facebook/sam2-hiera-large": ("configs/sam2/sam2_hiera_l.yaml", "sam2_hiera_large.pt"),
    "facebook/sam2.1-hiera-tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "facebook/sam2.1-hiera-small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "facebook/sam2.1-hiera-base-plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "facebook/sam2.1-hiera-large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SAM2Config:
    """Where SAM2 comes from.

    Attributes:
        model: a checkpoint file (`*.pt` holding `{"model": state_dict}`, the official format) or a hub id
            such as "facebook/sam2.1-hiera-tiny" (resolved from the local Hugging Face cache only).
        config: the sam2 model config, e.g. "configs/sam2.1/sam2.1_hiera_t.yaml"; inferred from the hub id
            or from an official checkpoint file name when omitted.
        device: torch device string.
        image_size: override of the model's input resolution (default: the config's, 1024). Smaller is
            faster on CPU at some cost in accuracy.
    """

    model: str = "facebook/sam2.1-hiera-tiny"
    config: str | None = None
    device: str = "cpu"
    image_size: int | None = None

    def __post_init__(self) -> None:
        size = self.image_size
        require(size is None or (size >= 64 and size % 32 == 0), self, "image_size", "a multiple of 32 >= 64 or None")


def _import_sam2():
    try:
        import sam2  # noqa: F401
        from sam2.build_sam import build_sam2_video_predictor
    except ImportError as exc:
        raise ImportError(
            "the SAM2 tracker needs the `sam2` package: `SAM2_BUILD_CUDA=0 pip install --no-build-isolation "
            "sam2==1.1.0` (or `pip install actwm[sam2]`), or use `--tracker classical`"
        ) from exc
    return build_sam2_video_predictor


def _resolve_sam2(config: SAM2Config) -> tuple[str, str]:
    """Return `(config_name, checkpoint_path)` for a SAM2Config, or raise a clear error."""
    model = config.model
    if model in SAM2_HUB_IDS:
        cfg_name, ckpt_name = SAM2_HUB_IDS[model]
        try:
            from huggingface_hub import hf_hub_download

            ckpt = hf_hub_download(repo_id=model, filename=ckpt_name, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any hub/cache failure means "file not available"
            raise FileNotFoundError(
                f"SAM2 checkpoint for {model!r} is not in the local Hugging Face cache; download "
                f"{ckpt_name!r} from https://huggingface.co/{model} and pass its path "
                f"(e.g. --sam2-checkpoint /path/{ckpt_name})"
            ) from exc
        return config.config or cfg_name, ckpt
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(
            f"SAM2 checkpoint {path} not found: provide an official SAM2 checkpoint such as "
            f"'sam2.1_hiera_tiny.pt' (a torch file holding {{'model': state_dict}}) or a hub id from "
            f"{sorted(SAM2_HUB_IDS)}"
        )
    cfg_name = config.config
    if cfg_name is None:
        by_file = {ck: cfg for cfg, ck in SAM2_HUB_IDS.values()}
        if path.name not in by_file:
            raise ValueError(
                f"cannot infer the SAM2 config for checkpoint {path.name!r}; pass config= (e.g. "
                f"'configs/sam2.1/sam2.1_hiera_t.yaml')"
            )
        cfg_name = by_file[path.name]
    return cfg_name, str(path)


@contextlib.contextmanager
def _frames_as_video(module, images, height: int, width: int) -> Iterator[None]:
    """Make `init_state` read our in-memory frames instead of decoding a JPEG folder or mp4 file.

    sam2 1.1.0's `SAM2VideoPredictor.init_state` only accepts a path; it calls the module-level
    `load_video_frames`, which we substitute for the duration of the call.
    """
    original = module.load_video_frames

    def _load(**_kwargs):
        return images, height, width

    module.load_video_frames = _load
    try:
        yield
    finally:
        module.load_video_frames = original


class SAM2Tracker:
    """Mask tracking with the SAM2 video predictor (`sam2.build_sam.build_sam2_video_predictor`).

    Each frame-0 mask is given to SAM2 with `add_new_mask` (object id = its index) and propagated forward
    with `propagate_in_video`; a pixel belongs to the object where the mask logit is > 0.
    """

    def __init__(self, config: SAM2Config | None = None) -> None:
        self.config = config or SAM2Config()
        build = _import_sam2()
        cfg_name, ckpt = _resolve_sam2(self.config)
        overrides = [f"++model.image_size={self.config.image_size}"] if self.config.image_size else []
        try:  # hole filling needs sam2's optional compiled extension; without it sam2 warns on every frame
            import sam2._C  # noqa: F401

            fill_holes = 8
        except ImportError:
            fill_holes = 0
        # sam2's own video post-processing settings (build_sam2_video_predictor's apply_postprocessing)
        overrides += [
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
            "++model.binarize_mask_from_pts_for_mem_enc=true",
            f"++model.fill_hole_area={fill_holes}",
        ]
        try:
            self.predictor = build(
                cfg_name,
                ckpt_path=ckpt,
                device=self.config.device,
                hydra_overrides_extra=overrides,
                apply_postprocessing=False,
            )
        except RuntimeError as exc:
            raise ValueError(f"SAM2 checkpoint {ckpt} does not match config {cfg_name}: {exc}") from exc
        size = f"@{self.config.image_size}" if self.config.image_size else ""
        self.name = (
            f"sam2({Path(self.config.model).name if Path(self.config.model).is_file() else self.config.model}{size})"
        )

    def _images(self, frames: np.ndarray):
        """`(T, H, W, 3)` uint8 -> `(T, 3, S, S)` float normalised as sam2's own frame loader does."""

        size = self.predictor.image_size
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.config.device)

    def _state(self, frames: np.ndarray):
        import sam2.sam2_video_predictor as svp

        h, w = frames.shape[1:3]
        with torch.inference_mode(), _frames_as_video(svp, self._images(frames), h, w):
            return self.predictor.init_state(video_path="<in-memory frames>")

    def masks_from_prompts(self, frame: np.ndarray, prompts) -> np.ndarray:
        """Segment prompted structures on one `(H, W, 3)` uint8 frame -> `(N, H, W)` bool.

        `prompts`: objects with `.box` `(x0, y0, x1, y1)` and/or `.points` `((x, y), ...)` (positive clicks)
        in pixels, e.g. `actwm.eval.prompts.Prompt`.
        """

        frame = np.asarray(frame)
        state = self._state(frame[None])
        masks = None
        with torch.inference_mode():
            for j, p in enumerate(prompts):
                points = np.asarray(p.points, np.float32) if p.points else None
                labels = np.ones(len(points), np.int32) if points is not None else None
                box = np.asarray(p.box, np.float32) if p.box is not None else None
                _, _, logits = self.predictor.add_new_points_or_box(
                    state, frame_idx=0, obj_id=j, points=points, labels=labels, box=box
                )
                masks = (logits[:, 0] > 0).cpu().numpy()
        if masks is None:
            return np.zeros((0, *frame.shape[:2]), bool)
        return masks

    def track(self, frames: np.ndarray, masks0: np.ndarray) -> np.ndarray:
        """`(T, H, W, 3)` uint8, `(N, H, W)` bool -> `(T, N, H, W)` bool."""

        frames, masks0 = check_track_inputs(frames, masks0)
        t_len, h, w, _ = frames.shape
        out = np.zeros((t_len, len(masks0), h, w), bool)
        out[0] = masks0
        if len(masks0) == 0:
            return out
        state = self._state(frames)
        with torch.inference_mode():
            for j, mask in enumerate(masks0):
                self.predictor.add_new_mask(state, frame_idx=0, obj_id=j, mask=torch.from_numpy(mask))
            for frame_idx, obj_ids, logits in self.predictor.propagate_in_video(state):
                if frame_idx == 0:
                    continue
                m = (logits[:, 0] > 0).cpu().numpy()
                for k, obj in enumerate(obj_ids):
                    out[frame_idx, int(obj)] = m[k]
        return out
