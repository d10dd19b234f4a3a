"""The real loading path (`from_pretrained`), exercised with tiny weights saved in the official diffusers layout."""

import dataclasses

import pytest
import torch

from actwm.models import cosmos, svd, wan
from actwm.models.world_model import WorldModel


def _save_svd(root):
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    UNetSpatioTemporalConditionModel(**svd.tiny_config(4)).save_pretrained(root / "unet")
    AutoencoderKLTemporalDecoder(block_out_channels=(32, 32), layers_per_block=1, latent_channels=4).save_pretrained(
        root / "vae"
    )
    CLIPVisionModelWithProjection(CLIPVisionConfig(**svd.tiny_image_encoder_config())).save_pretrained(
        root / "image_encoder"
    )


def _wan_vae(root):
    from diffusers import AutoencoderKLWan

    AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.0, 0.3],
        latents_std=[1.5, 0.5, 1.0, 2.0],
    ).save_pretrained(root / "vae")


def _save_cosmos(root):
    from diffusers import CosmosTransformer3DModel

    cfg = dict(cosmos.tiny_config(4), concat_padding_mask=True)  # as the real checkpoint: exercises our zero channel
    CosmosTransformer3DModel(**cfg).save_pretrained(root / "transformer")
    _wan_vae(root)


def _save_wan(root):
    from diffusers import WanTransformer3DModel

    WanTransformer3DModel(**wan.tiny_config(4)).save_pretrained(root / "transformer")
    _wan_vae(root)


def _save_wan_i2v(root):
    """Wan 2.1 I2V layout: channel-concat transformer (in = 2*4 + 4) with CLIP image cross-attention."""
    from diffusers import WanTransformer3DModel
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = dict(wan.tiny_config(4, concat_mask=4), image_dim=32, added_kv_proj_dim=64)
    WanTransformer3DModel(**cfg).save_pretrained(root / "transformer")
    CLIPVisionModel(CLIPVisionConfig(**svd.tiny_image_encoder_config())).save_pretrained(root / "image_encoder")
    _wan_vae(root)


SAVERS = {"svd": _save_svd, "cosmos": _save_cosmos, "wan2.1": _save_wan, "wan2.1-i2v": _save_wan_i2v}


@pytest.mark.parametrize("backbone", list(SAVERS))
def test_from_pretrained_local_directory(backbone, tmp_path):
    SAVERS[backbone](tmp_path)
    assert any((tmp_path).rglob("diffusion_pytorch_model.safetensors"))
    wm = WorldModel.from_pretrained(
        str(tmp_path), backbone=backbone.removesuffix("-i2v"), action_space="nav3", encoder={"hidden_dim": 32}
    ).eval()
    k = wm.codec.temporal_compression
    assert k == (1 if backbone == "svd" else 4)
    frames = 5
    video = torch.rand(1, frames, 3, 32, 32) * 2 - 1
    actions = torch.randn(1, frames, 3)
    x0 = wm.encode(video)
    assert x0.shape[:3] == (1, 1 + (frames - 1) // k, 4)
    cond = wm.condition(video[:, 0], x0[:, 0], frames=frames)
    t = torch.tensor([0.5])
    with torch.no_grad():
        noisy = torch.randn_like(x0)
        assert torch.equal(wm(noisy, t, cond, actions), wm.forward_bare(noisy, t, cond))
    out = wm.generate(video[:, 0], actions, steps=2)
    assert out.shape == video.shape
    # our checkpoint of a pretrained-backed model stores only what is not re-loadable from the source
    wm.save(tmp_path / "ckpt")
    loaded = WorldModel.load(tmp_path / "ckpt").eval()
    with torch.no_grad():  # same weights; mmap-loaded tensors may take other CPU kernels, so ~1e-6, not bit-equal
        torch.testing.assert_close(loaded(noisy, t, cond, actions), wm(noisy, t, cond, actions), atol=1e-5, rtol=1e-4)


def test_cosmos_zero_padding_channel_matches_model_own_padding(monkeypatch):
    """Our appended zero padding-mask channel equals what the model concatenates itself with an all-zero mask.

    The model's own path resizes the mask with torchvision, which has no CPU build here; a test-only
    stand-in does the same nearest-neighbour resize so both paths can be compared.
    """
    import types

    import diffusers.models.transformers.transformer_cosmos as tc
    from diffusers import CosmosTransformer3DModel

    def resize(x, size, interpolation=None):
        return torch.nn.functional.interpolate(x, size=size, mode="nearest")

    fake = types.SimpleNamespace(
        functional=types.SimpleNamespace(resize=resize), InterpolationMode=types.SimpleNamespace(NEAREST="nearest")
    )
    monkeypatch.setattr(tc, "transforms", fake, raising=False)
    torch.manual_seed(0)
    model = CosmosTransformer3DModel(**dict(cosmos.tiny_config(4), concat_padding_mask=True)).eval()
    x = torch.randn(1, 5, 3, 8, 8)  # 4 latent + 1 condition-mask channel
    t = torch.full((1, 1, 3, 1, 1), 0.5)
    ctx = torch.randn(1, 1, 32)
    with torch.no_grad():
        theirs = model(x, t, ctx, padding_mask=torch.zeros(1, 1, 8, 8), return_dict=False)[0]
        model.register_to_config(concat_padding_mask=False)
        ours = model(torch.cat([x, torch.zeros(1, 1, 3, 8, 8)], dim=1), t, ctx, return_dict=False)[0]
    assert torch.equal(ours, theirs)
    # and the adapter does exactly this: it switched the flag off and appends the channel itself
    from actwm.models.cosmos import CosmosAdapter

    adapter = CosmosAdapter(CosmosTransformer3DModel(**dict(cosmos.tiny_config(4), concat_padding_mask=True)))
    assert adapter._pad_channel and not adapter.backbone.config.concat_padding_mask


def test_wan_i2v_condition_matches_official_pipeline(tmp_path):
    """Our channel-concat input [noisy, mask, padded-video latents] equals what diffusers' WanImageToVideoPipeline
    builds (`prepare_latents`), and the CLIP branch feeds the transformer's image cross-attention."""
    import types

    from diffusers import WanImageToVideoPipeline

    _save_wan_i2v(tmp_path)
    wm = WorldModel.from_pretrained(
        str(tmp_path), backbone="wan2.1", action_space="nav3", encoder={"hidden_dim": 32}
    ).eval()
    adapter = wm.adapter
    assert adapter.concat_condition and adapter.mask_channels == 4 and not adapter.replaces_first_frame
    assert wm.config.image_encoder == {"source": str(tmp_path), "subfolder": "image_encoder"}
    frames, size = 9, 32
    image = torch.rand(2, 3, size, size) * 2 - 1
    cond = wm.condition(image, frames=frames)
    noisy = torch.randn(2, 3, 4, size // 8, size // 8)
    ours = adapter._concat_input(noisy, cond)  # (b, f, 2C + k, h, w)

    vae = wm.codec.vae
    fake = types.SimpleNamespace(
        vae=vae,
        vae_scale_factor_temporal=4,
        vae_scale_factor_spatial=8,
        config=types.SimpleNamespace(expand_timesteps=False),
    )
    with torch.no_grad():  # the pipeline encodes one image and repeats it over its batch: one call per image
        official = torch.cat(
            [
                WanImageToVideoPipeline.prepare_latents(
                    fake, image[i : i + 1], 1, 4, size, size, frames, torch.float32, "cpu"
                )[1]
                for i in range(2)
            ]
        ).permute(0, 2, 1, 3, 4)  # (b, c, f, h, w) -> (b, f, c, h, w)
    torch.testing.assert_close(ours[:, :, 4:], official, atol=1e-5, rtol=1e-5)
    assert torch.equal(ours[:, :, :4], noisy)
    assert cond.image.shape == (2, 17, 32)  # CLIP penultimate hidden states: 16 patches + CLS
    t = torch.tensor([0.3, 0.7])
    actions = torch.randn(2, frames, 3)
    with torch.no_grad():
        base = wm(noisy, t, cond, actions)
        other = wm(noisy, t, dataclasses.replace(cond, image=torch.randn_like(cond.image)), actions)
    assert base.shape == noisy.shape and not torch.equal(base, other)  # the image branch is used


def test_wan_i2v_needs_clip_encoder_and_512_text_tokens():
    from diffusers import WanTransformer3DModel

    cfg = dict(wan.tiny_config(4, concat_mask=4), image_dim=32, added_kv_proj_dim=64)
    with pytest.raises(ValueError, match="image encoder"):
        wan.WanAdapter(WanTransformer3DModel(**cfg), text_tokens=512)
    with pytest.raises(ValueError, match="text_tokens=512"):
        wan.WanAdapter(WanTransformer3DModel(**cfg), text_tokens=1, image_encoder=torch.nn.Identity())
    with pytest.raises(ValueError, match="2 \\* out \\+ k"):
        wan.WanAdapter(WanTransformer3DModel(**dict(wan.tiny_config(4), in_channels=6)))
