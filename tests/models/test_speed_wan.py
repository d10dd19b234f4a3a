"""The Wan adapter's per-frame time embedding (issue 14): same outputs as diffusers' own per-token path.

Our forward embeds the time (plus the branches' per-frame contributions) once per latent frame and spreads it over
the frame's tokens; the reference is the unedited backbone called with per-token timesteps under the same
conditioning (diffusers computes the time MLP and `time_proj` on every token, as the adapter did before).
"""

import pytest
import torch
from einops import rearrange, repeat

from actwm.models.world_model import TINY_PRESETS, WorldModel
from tests.models.test_world_model import inputs, randomise_encoder

WAN = ["wan2.1", "wan2.2", "wan2.1-i2v"]


def per_token_reference(wm: WorldModel, x: torch.Tensor, t: torch.Tensor, cond, conditioning) -> torch.Tensor:
    """diffusers' own per-token path: the backbone called directly with `(b, tokens)` timesteps."""
    adapter = wm.adapter
    b, f, _, h, w = x.shape
    _, ph, pw = adapter.backbone.config.patch_size
    t_frames = repeat(t.float() * 1000.0, "b -> b f", f=f).clone()
    if adapter.concat_condition:
        x = adapter._concat_input(x, cond)
    else:
        x = torch.cat([cond.latent.unsqueeze(1), x[:, 1:]], dim=1)
        t_frames[:, 0] = 0.0
    extra = {"encoder_hidden_states_image": cond.image} if cond.image is not None else {}
    with adapter.conditioned(conditioning):
        out = adapter.backbone(
            rearrange(x, "b f c h w -> b c f h w"),
            timestep=repeat(t_frames, "b f -> b (f n)", n=(h // ph) * (w // pw)),
            encoder_hidden_states=cond.context,
            return_dict=False,
            **extra,
        )[0]
    return rearrange(out, "b c f h w -> b f c h w")


@pytest.mark.parametrize("backbone", WAN)
def test_per_frame_time_embedding_matches_per_token(backbone):
    wm = WorldModel.from_preset(TINY_PRESETS[backbone], "nav3").eval()
    randomise_encoder(wm)
    _, actions, _, cond, noisy, t = inputs(wm)
    conditioning = wm.conditioning(actions)
    with torch.no_grad():
        ours = wm.net(noisy, t, cond, conditioning)
        ref = per_token_reference(wm, noisy, t, cond, conditioning)
        bare_ref = per_token_reference(wm, noisy, t, cond, None)
        bare = wm.forward_bare(noisy, t, cond)
    assert (ours - bare).abs().max() > 1e-3  # the actions matter
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bare, bare_ref, rtol=1e-5, atol=1e-5)


def test_per_frame_time_embedding_runs_the_time_mlp_on_frames():
    """The time MLP sees one row per latent frame in our forward, every token in a direct backbone call."""
    wm = WorldModel.from_preset(TINY_PRESETS["wan2.1-i2v"], "nav3").eval()
    _, actions, _, cond, noisy, t = inputs(wm)
    rows = []
    handle = wm.adapter.backbone.condition_embedder.time_proj.register_forward_pre_hook(
        lambda m, a: rows.append(a[0].shape[1])
    )
    with torch.no_grad():
        wm.net(noisy, t, cond, wm.conditioning(actions))
        per_token_reference(wm, noisy, t, cond, None)
    handle.remove()
    f, h, w = noisy.shape[1], noisy.shape[3], noisy.shape[4]
    assert rows == [f, f * (h // 2) * (w // 2)]


def test_per_frame_time_embedding_gradients_match():
    """Training: the action encoder's and backbone's gradients agree with the per-token path."""
    wm = WorldModel.from_preset(TINY_PRESETS["wan2.1-i2v"], "nav3")
    randomise_encoder(wm)
    _, actions, _, cond, noisy, t = inputs(wm)
    grads = []
    for run in (lambda c: wm.net(noisy, t, cond, c), lambda c: per_token_reference(wm, noisy, t, cond, c)):
        wm.zero_grad()
        run(wm.conditioning(actions)).square().mean().backward()
        grads.append([p.grad.clone() for p in wm.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
