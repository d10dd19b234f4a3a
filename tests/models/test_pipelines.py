"""Our wrapped backbones inside the real diffusers pipelines (tiny real parts, offline).

For each pipeline and timestep mode, with and without the pipeline's own classifier-free guidance:
zero actions -> frames bit-identical to the bare backbone in the same pipeline; non-zero actions -> frames change.
The user API is `with wm.actions_for_pipeline(actions): pipe(...)`.
"""

import pytest
import torch

from actwm.models.world_model import WorldModel
from tests.models.test_pretrained import SAVERS

FRAMES = 5  # pixel frames: 1 + 4*1 for the Wan VAE (k=4)


def randomise_encoder(wm, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in wm.encoder.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def wrapped(kind, root, **kw):
    SAVERS[kind](root)
    wm = WorldModel.from_pretrained(
        str(root), backbone=kind.removesuffix("-i2v"), encoder={"hidden_dim": 32}, **kw
    ).eval()
    return wm


def tiny_umt5():
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    cfg = UMT5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    return UMT5EncoderModel(cfg).eval()


def text_embeds(encoder, seed, tokens=6):
    ids = torch.randint(0, 64, (1, tokens), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return encoder(input_ids=ids).last_hidden_state


def text_pipeline_run(pipe, pos, neg, guidance, *args, **inputs):
    """`run()` for a text-conditioned pipeline: 32 px, FRAMES frames, 2 steps, a fixed seed, frames as tensors."""

    def run():
        return pipe(
            *args,
            prompt_embeds=pos,
            negative_prompt_embeds=neg,
            height=32,
            width=32,
            num_frames=FRAMES,
            num_inference_steps=2,
            guidance_scale=guidance,
            generator=torch.Generator().manual_seed(0),
            output_type="pt",
            **inputs,
        ).frames

    return run


def check(run, wm, actions):
    """run() -> frames. Zero actions: bit-identical to the bare backbone; random actions: different frames."""
    bare = run()
    with wm.actions_for_pipeline(torch.zeros_like(actions)):
        zero = run()
    assert torch.equal(zero, bare)
    randomise_encoder(wm)
    with wm.actions_for_pipeline(actions):
        moved = run()
    assert (moved - bare).abs().max() > 1e-3
    assert torch.equal(run(), bare)  # outside the block the backbone is bare again


def test_stable_video_diffusion_pipeline(tmp_path):
    """Without and with the pipeline's classifier-free guidance (which doubles the batch in one UNet call)."""
    from diffusers import EulerDiscreteScheduler, StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor

    wm = wrapped("svd", tmp_path)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        interpolation_type="linear",
        use_karras_sigmas=True,
        sigma_min=0.002,
        sigma_max=700.0,
        timestep_spacing="leading",
        timestep_type="continuous",
        steps_offset=1,
    )
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pipe = StableVideoDiffusionPipeline(
        vae=wm.codec.vae,
        image_encoder=wm.adapter.image_encoder,
        unet=wm.adapter.backbone,
        scheduler=scheduler,
        feature_extractor=processor,
    )
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 32, 32)
    frames = 3  # SVD's VAE does not compress time
    actions = torch.randn(1, frames, 3)
    initial = {k: v.clone() for k, v in wm.encoder.state_dict().items()}
    for guidance in (1.0, 3.0):

        def run():
            return pipe(
                image,
                height=32,
                width=32,
                num_frames=frames,
                num_inference_steps=2,
                min_guidance_scale=1.0,
                max_guidance_scale=guidance,
                generator=torch.Generator().manual_seed(0),
                output_type="pt",
                decode_chunk_size=frames,
            ).frames

        wm.encoder.load_state_dict(initial)  # zero-initialised output layer again
        check(run, wm, actions)


def flow_scheduler(**kw):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=3.0, **kw)


@pytest.mark.parametrize("expand_timesteps", [False, True])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_wan_pipeline(tmp_path, expand_timesteps, guidance):
    from diffusers import WanPipeline

    wm = wrapped("wan2.1", tmp_path)
    text = tiny_umt5()
    pipe = WanPipeline(
        tokenizer=None,
        text_encoder=text,
        vae=wm.codec.vae,
        scheduler=flow_scheduler(),
        transformer=wm.adapter.backbone,
        expand_timesteps=expand_timesteps,
    )
    pipe.set_progress_bar_config(disable=True)
    actions = torch.randn(1, FRAMES, 3)
    pos, neg = text_embeds(text, 0), text_embeds(text, 1)

    check(text_pipeline_run(pipe, pos, neg, guidance), wm, actions)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_wan_image_to_video_pipeline(tmp_path, guidance):
    """Wan 2.1 I2V (channel-concat first frame + CLIP image cross-attention), per-sample timesteps."""
    from diffusers import WanImageToVideoPipeline
    from transformers import CLIPImageProcessor

    wm = wrapped("wan2.1-i2v", tmp_path)
    text = tiny_umt5()
    pipe = WanImageToVideoPipeline(
        tokenizer=None,
        text_encoder=text,
        vae=wm.codec.vae,
        scheduler=flow_scheduler(),
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        image_encoder=wm.adapter.image_encoder,
        transformer=wm.adapter.backbone,
    )
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 32, 32)
    actions = torch.randn(1, FRAMES, 3)
    pos, neg = text_embeds(text, 0, tokens=512), text_embeds(text, 1, tokens=512)  # Wan I2V splits 512 text tokens

    check(text_pipeline_run(pipe, pos, neg, guidance, image), wm, actions)


def test_wan22_tiny_preset_in_image_to_video_pipeline_expand_timesteps():
    """The wan2.2-tiny preset (2x2 patch) in WanImageToVideoPipeline(expand_timesteps=True) (Wan 2.2 TI2V's mode:
    per-token timesteps, frame 0 at t=0), with guidance."""
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline

    wm = WorldModel.from_preset("wan2.2-tiny", "nav3").eval()
    channels = wm.adapter.backbone.config.in_channels
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=channels,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * channels,
        latents_std=[1.0] * channels,
    ).eval()
    text = tiny_umt5()
    pipe = WanImageToVideoPipeline(
        tokenizer=None,
        text_encoder=text,
        vae=vae,
        scheduler=flow_scheduler(),
        transformer=wm.adapter.backbone,
        expand_timesteps=True,
    )
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 32, 32)
    actions = torch.randn(1, FRAMES, 3)
    pos, neg = text_embeds(text, 0), text_embeds(text, 1)

    check(text_pipeline_run(pipe, pos, neg, 3.0, image), wm, actions)


class PassThroughSafetyChecker:
    """Offline stand-in for `cosmos_guardrail.CosmosSafetyChecker`: lets every prompt and video through."""

    def to(self, *args, **kwargs):
        return self

    def check_text_safety(self, prompt):
        return True

    def check_video_safety(self, video):
        return video


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_cosmos2_video_to_world_pipeline(tmp_path, guidance):
    """Cosmos-Predict2 Video2World: per-frame timesteps (batch, 1, frames, 1, 1), frame 0 at sigma_conditioning."""
    from diffusers import Cosmos2VideoToWorldPipeline, CosmosTransformer3DModel, FlowMatchEulerDiscreteScheduler
    from transformers import T5Config, T5EncoderModel

    from actwm.models import cosmos
    from tests.models.test_pretrained import _wan_vae

    CosmosTransformer3DModel(**cosmos.tiny_config(4)).save_pretrained(tmp_path / "transformer")
    _wan_vae(tmp_path)
    wm = WorldModel.from_pretrained(str(tmp_path), backbone="cosmos", encoder={"hidden_dim": 32}).eval()
    torch.manual_seed(0)
    text = T5EncoderModel(T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True)
    pipe = Cosmos2VideoToWorldPipeline(
        text_encoder=text,
        tokenizer=None,
        transformer=wm.adapter.backbone,
        vae=wm.codec.vae,
        scheduler=scheduler,
        safety_checker=PassThroughSafetyChecker(),
    )
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 32, 32)
    actions = torch.randn(1, FRAMES, 3)
    pos, neg = text_embeds(text, 0), text_embeds(text, 1)

    check(text_pipeline_run(pipe, pos, neg, guidance, image=image), wm, actions)


def test_wan_expand_timesteps_with_another_patch_is_a_clear_error():
    """diffusers' expand_timesteps mode makes one timestep per 2x2 patch; a 1x1-patch transformer gets a clear error
    instead of a reshape failure deep inside the blocks."""
    from diffusers import WanTransformer3DModel

    from actwm.models.conditioning import Conditioning
    from actwm.models.wan import WanAdapter, tiny_config

    adapter = WanAdapter(WanTransformer3DModel(**dict(tiny_config(4), patch_size=(1, 1, 1)))).eval()
    hidden = torch.randn(1, 4, 2, 4, 4)
    per_2x2 = torch.full((1, 2 * 2 * 2), 500.0)  # what the pipeline builds: first_frame_mask[..., ::2, ::2]
    emb = Conditioning({"actions": torch.zeros(1, 2, adapter.emb_dim)})
    with adapter.conditioned(emb), pytest.raises(ValueError, match="2x2 spatial patch"):
        adapter.backbone(hidden, timestep=per_2x2, encoder_hidden_states=torch.zeros(1, 1, 32))
