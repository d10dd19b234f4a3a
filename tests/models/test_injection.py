"""Every modulation site of every backbone receives the branch contributions, with the right frame mapping; the
temporal-downsampling rule; classifier-free guidance over two independent branches."""

import pytest
import torch
from einops import rearrange, repeat

from actwm.models.conditioning import Conditioning, Guidance
from tests.conftest import BACKBONES
from tests.models.test_world_model import inputs, make, randomise_encoder


def consumers(wm):
    """{name: (module, how to read the embedding it modulates with from (args, kwargs))}, found in the diffusers
    backbone independently of the adapter's declared sites."""
    net = wm.adapter.backbone
    if wm.config.family == "svd":  # every res-block (spatial and temporal) projects temb into its shift
        return {n: (m, lambda a, k: a[0]) for n, m in net.named_modules() if n.endswith("time_emb_proj")}
    if wm.config.family == "cosmos":  # every AdaLN-Zero of every block, and the output norm
        names = [n for n, _ in net.named_modules() if n.endswith(("norm1", "norm2", "norm3")) or n == "norm_out"]
        return {n: (net.get_submodule(n), lambda a, k: a[1]) for n in names}
    # Wan: every block's modulation (temb = timestep_proj), and the output norm's temb (condition_embedder output)
    sites = {f"blocks.{i}": (b, lambda a, k: a[2]) for i, b in enumerate(net.blocks)}
    sites["norm_out (temb)"] = (net.condition_embedder, None)
    return sites


def capture(wm, run):
    seen, handles = {}, []
    for name, (module, read) in consumers(wm).items():
        if read is None:
            handles.append(module.register_forward_hook(lambda m, a, o, n=name: seen.__setitem__(n, o[0].clone())))
        else:
            hook = lambda m, a, k, n=name, r=read: seen.__setitem__(n, r(a, k).clone())  # noqa: E731
            handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_modulation_site_receives_the_action_embedding(backbone):
    wm = make(backbone)
    randomise_encoder(wm)
    _, actions, _, cond, noisy, t = inputs(wm)
    bare = capture(wm, lambda: wm.forward_bare(noisy, t, cond))
    acted = capture(wm, lambda: wm(noisy, t, cond, actions))
    assert len(bare) >= 3
    missed = [name for name in bare if torch.equal(bare[name], acted[name])]
    assert not missed, f"{backbone}: modulation sites that did not receive the action embedding: {missed}"


@pytest.mark.parametrize("backbone", BACKBONES)
def test_each_site_adds_its_frames_embedding_exactly(backbone):
    """At each declared site, (with actions) - (bare) is the per-latent-frame embedding laid out for that site."""
    wm = make(backbone)
    randomise_encoder(wm)
    _, actions, _, cond, noisy, t = inputs(wm)
    emb = wm.embed_actions(actions).detach()
    seen = {}

    def spy(site):
        module = wm.adapter.backbone.get_submodule(site.module)
        if site.target.startswith("kwarg:"):
            key = site.target.split(":")[1]
            return module.register_forward_pre_hook(
                lambda m, a, k: seen.setdefault(site.name, []).append(k[key].clone()), with_kwargs=True
            )
        i = None if site.target == "output" else int(site.target[7:-1])
        return module.register_forward_hook(
            lambda m, a, o: seen.setdefault(site.name, []).append((o if i is None else o[i]).clone())
        )

    handles = [spy(site) for site in wm.adapter.sites]
    with torch.no_grad():
        wm.forward_bare(noisy, t, cond)
        wm(noisy, t, cond, actions)
    for h in handles:
        h.remove()
    assert set(seen) == {s.name for s in wm.adapter.sites}
    for name, (bare, acted) in seen.items():
        diff = acted - bare
        if wm.config.family == "wan":  # (b, tokens, c): tokens are frame-major
            expected = repeat(emb, "b f c -> b (f n) c", n=diff.shape[1] // emb.shape[1])
        else:  # (b * f, c) rows
            expected = rearrange(emb, "b f c -> (b f) c")
        torch.testing.assert_close(diff, expected.to(diff.dtype), atol=1e-5, rtol=1e-4, msg=f"{backbone} {name}")


@pytest.mark.parametrize("backbone", BACKBONES)
def test_temporal_downsampling_frame_zero_alone_then_groups_of_k(backbone):
    """Changing pixel frame j's action changes only latent frame 0 (j = 0) or 1 + (j - 1) // k, and that one by a
    clear margin; every other latent frame's embedding is bit-identical."""
    wm = make(backbone)
    randomise_encoder(wm)
    k = wm.codec.temporal_compression
    frames = 1 + 2 * k if k > 1 else 5
    actions = torch.randn(1, frames, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = wm.embed_actions(actions)
        for j in range(frames):
            moved = actions.clone()
            moved[:, j] += 2.0
            change = (wm.embed_actions(moved) - base).abs().flatten(2).amax(-1)[0]  # (latent_frames,)
            target = 0 if j == 0 else 1 + (j - 1) // k
            others = torch.cat([change[:target], change[target + 1 :]])
            assert torch.all(others == 0), f"{backbone}: pixel frame {j} leaked into latent frames {change.tolist()}"
            assert change[target] > 1e-3, f"{backbone}: pixel frame {j} did not reach latent frame {target}"


def test_guidance_drops_two_branches_independently():
    """A second branch (a fixed per-frame embedding, as KVAF will add) beside the actions: guidance on each drops
    exactly that branch, in one batched forward, and their weights combine as cond + sum (w - 1)(cond - dropped)."""
    wm = make("wan2.1")
    randomise_encoder(wm)
    video, actions, *_ = inputs(wm, batch=1)
    f = wm.embed_actions(actions).shape[1]
    other = Conditioning({"other": torch.randn(1, f, wm.adapter.emb_dim, generator=torch.Generator().manual_seed(4))})
    calls = []
    handle = wm.adapter.backbone.register_forward_pre_hook(
        lambda m, a, k: calls.append(a[0].shape[0]), with_kwargs=True
    )

    def gen(**kw):
        return wm.generate(video[:, 0], actions, steps=1, seeds=[3], return_latents=True, **kw)

    with torch.no_grad():
        both = gen(conditioning=other)
        no_actions = gen(conditioning=other, guidance={"actions": 0.0})  # drops only the action branch
        no_other = gen(conditioning=other, guidance={"other": 0.0})  # drops only the other branch
        only_actions = gen()  # never had the other branch
        calls.clear()
        guided = gen(conditioning=other, guidance={"actions": 2.0, "other": 3.0})
        joint = gen(conditioning=other, guidance={("actions", "other"): 2.0})
    handle.remove()
    torch.testing.assert_close(no_other, only_actions, atol=1e-5, rtol=1e-5)
    assert (no_actions - both).abs().max() > 1e-2 and (no_other - both).abs().max() > 1e-2
    assert (no_actions - no_other).abs().max() > 1e-2
    # one Euler step is linear in the network output
    expected = both + (2.0 - 1) * (both - no_actions) + (3.0 - 1) * (both - no_other)
    torch.testing.assert_close(guided, expected, atol=2e-4, rtol=1e-4)
    assert calls[0] == 3  # [cond, without actions, without other] in one batched forward
    bare = wm.generate(video[:, 0], actions, steps=1, seeds=[3], return_latents=True, guidance=0.0)
    assert (joint - both).abs().max() > 1e-2 and not torch.allclose(bare, joint)


def test_guided_levels_exact_at_the_bounds():
    """(lo, hi]: a level equal to lo is not guided, one equal to hi is, also when float rounding puts the schedule's
    value a hair off the bound (t = 0.3 in float32 is 0.30000001)."""
    g = Guidance.of(2.0, (0.3, 1.0))
    levels = torch.linspace(1, 0, 11, dtype=torch.float64).tolist()  # 1.0, 0.9, ..., 0.3 (as 0.29999...), ...
    assert g.guided_levels(levels) == [True] * 7 + [False] * 4
    assert g.guided_levels([0.3 + 1e-9, 1.0 + 1e-16]) == [True, True]
    assert Guidance.of(1.0, (0.3, 1.0)).guided_levels(levels) == [False] * 11
    with pytest.raises(ValueError, match="finite"):
        Guidance.of(float("nan"))


def test_guided_steps_follow_the_schedule_bound():
    """10 Euler steps at shift 1 visit t = 1.0, 0.9, ..., 0.1; guidance on (0.3, 1] runs the batched
    [cond, action-free] forward at exactly the 7 levels t > 0.3 (not at t = 0.3, stored as 0.30000001 in float32)."""
    wm = make("wan2.1", objective={"shift": 1.0})
    randomise_encoder(wm)
    video, actions, *_ = inputs(wm, batch=1)
    batches = []
    handle = wm.adapter.backbone.register_forward_pre_hook(
        lambda m, a, k: batches.append(a[0].shape[0]), with_kwargs=True
    )
    with torch.no_grad():
        wm.generate(video[:, 0], actions, steps=10, guidance=2.0, guidance_interval=(0.3, 1.0), return_latents=True)
    handle.remove()
    assert batches == [2] * 7 + [1] * 3
