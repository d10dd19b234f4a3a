"""The KVAF branch (EA-WM 3.2) on tiny real Wan transformers: shapes, zero-init bit-identity, EDLS target,
training, ablations, and KVAF + EgoWM actions on one backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actwm.models.conditioning import Conditioning
from actwm.models.kvaf import KVAF, KvafConfig, frame_differences, kvaf_inputs, numeric_inputs
from actwm.models.world_model import WorldModel

B, T, H = 2, 5, 16


def _model(preset: str = "wan2.1-tiny", conditioning: str = "kvaf+actions", **kvaf) -> WorldModel:
    torch.manual_seed(0)
    return WorldModel.from_preset(preset, "ee7", conditioning=conditioning, kvaf=kvaf)


def _clip(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(B, T, 3, H, H, generator=g) * 2 - 1
    kvaf = torch.rand(B, T, 3, H, H, generator=g) * 2 - 1
    return video, kvaf, torch.randn(B, T, 7, generator=g)


def _call(wm: WorldModel, video, kvaf, actions, kvaf_on: bool = True, keep=None):
    """One network call: video output and the branch outputs."""
    x0 = wm.encode(video)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.full((B,), 0.6)
    cond = wm.condition(video[:, 0], x0[:, 0], frames=T)
    inputs = kvaf_inputs(wm.encode(kvaf), torch.randn(x0.shape, generator=g), keep) if kvaf_on else None
    with torch.no_grad():
        out = wm.net(wm.objective.noisy(x0, t, noise), t, cond, wm.conditioning(actions, kvaf=inputs))
    return out, dict(wm.kvaf.outputs) if wm.kvaf is not None else {}


def test_fusion_layers_every_fifth_block_and_one_for_tiny():
    assert KvafConfig().fusion_layers(30) == (0, 5, 10, 15, 20, 25)
    assert KvafConfig().fusion_layers(2) == (0,)
    with pytest.raises(ValueError, match="kvaf.layers"):
        KvafConfig(layers=(3,)).fusion_layers(2)


def test_gate_and_event_latent_shapes():
    wm = _model(layers=[0, 1])
    video, kvaf, actions = _clip()
    out, branch = _call(wm, video, kvaf, actions)
    f, c, h, w = wm.encode(video).shape[1:]
    tokens = f * (h // 2) * (w // 2)  # patch 1x2x2
    assert len(branch["gates"]) == len(branch["events"]) == 2
    for gate, event in zip(branch["gates"], branch["events"]):
        assert gate.shape == (B, tokens, 1)
        assert event.shape == (B, f, c, h, w)
    assert branch["kvaf"].shape == out.shape == (B, f, c, h, w)


@pytest.mark.parametrize("preset", ["wan2.1-tiny", "wan2.2-tiny", "wan2.1-i2v-tiny"])
@pytest.mark.parametrize("gate", [True, False])
def test_zero_init_fusion_leaves_video_stream_bit_identical(preset, gate):
    wm = _model(preset, gate=gate)
    video, kvaf, actions = _clip()
    with_kvaf, branch = _call(wm, video, kvaf, actions)
    assert branch["kvaf"].shape == with_kvaf.shape  # the stream ran
    # the same backbone and action encoder in a model built without the KVAF branch (no hooks at all)
    torch.manual_seed(1)
    plain = WorldModel.from_preset(preset, "ee7", conditioning="actions")
    plain.load_state_dict({k: v for k, v in wm.state_dict().items() if not k.startswith("kvaf.")})
    bare, _ = _call(plain, video, kvaf, actions, kvaf_on=False)
    assert torch.equal(with_kvaf, bare)


def test_fused_video_depends_on_kvaf_once_gates_open_and_keep_zero_drops_it():
    wm = _model()
    for fusion in wm.kvaf.fusions.values():
        torch.nn.init.constant_(fusion.gate.bias, 0.5)
        torch.nn.init.normal_(fusion.event_head.weight, std=0.1)
    video, kvaf, actions = _clip()
    a, _ = _call(wm, video, kvaf, actions)
    b, _ = _call(wm, video, -kvaf, actions)
    assert not torch.allclose(a, b, atol=1e-4)
    off = torch.zeros(B, dtype=torch.bool)
    c, _ = _call(wm, video, kvaf, actions, keep=off)
    d, _ = _call(wm, video, -kvaf, actions, keep=off)
    bare, _ = _call(wm, video, kvaf, actions, kvaf_on=False)
    assert torch.equal(c, d) and torch.equal(c, bare)


def test_frame_differences_and_edls_target_is_codec_encoding_of_them():
    video, kvaf, actions = _clip()
    u = (video.numpy().astype(np.float64) + 1) / 2
    want = np.concatenate([np.zeros_like(u[:, :1]), np.abs(np.diff(u, axis=1))], 1) * 2 - 1
    np.testing.assert_allclose(frame_differences(video).numpy(), want, atol=1e-6)
    wm = _model()
    for fusion in wm.kvaf.fusions.values():
        torch.nn.init.normal_(fusion.event_head.weight, std=0.1)
    wm.loss(video, actions, kvaf=kvaf, generator=torch.Generator().manual_seed(0))
    target = wm.encode(torch.as_tensor(want, dtype=torch.float32))
    (event,) = wm.kvaf.outputs["events"]
    expected = ((event - target) ** 2)[:, 1:].mean()
    assert wm.last_losses["edls"] == pytest.approx(float(expected.detach()), rel=1e-5)


def _train(wm: WorldModel, steps: int) -> list[dict[str, float]]:
    video, kvaf, actions = _clip()
    opt = torch.optim.Adam([p for p in wm.parameters() if p.requires_grad], lr=3e-3)
    history = []
    for _ in range(steps):
        loss = wm.loss(video, actions, kvaf=kvaf, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(dict(wm.last_losses))
    return history


def test_training_reduces_every_loss_with_kvaf_and_actions_together():
    wm = _model()
    history = _train(wm, 25)
    assert set(history[0]) == {"video", "kvaf", "edls"}
    for key in history[0]:
        assert history[-1][key] < 0.8 * history[0][key], (key, history[0][key], history[-1][key])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in wm.encoder.parameters())
    gate = wm.kvaf.fusions["0"].gate
    assert gate.weight.abs().sum() > 0  # the fusion trained (stage 2)


def test_stage_one_freezes_the_fusion_only():
    wm = _model()
    wm.kvaf_stage = 1
    wm.set_train_mode("full")
    assert not any(p.requires_grad for p in wm.kvaf.fusion_parameters())
    assert all(p.requires_grad for p in wm.kvaf.head_parameters())
    assert all(p.requires_grad for p in wm.kvaf.blocks.parameters())
    before = {k: v.clone() for k, v in wm.kvaf.fusions.state_dict().items()}
    history = _train(wm, 3)
    assert history[-1]["kvaf"] < history[0]["kvaf"]
    assert all(torch.equal(before[k], v) for k, v in wm.kvaf.fusions.state_dict().items())


def test_lora_goes_on_both_streams():
    torch.manual_seed(0)
    wm = WorldModel.from_preset("wan2.1-tiny", "ee7", conditioning="kvaf", train_mode="lora", lora_rank=4)
    names = [n for n, p in wm.kvaf.blocks.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert any("lora_" in n for n, _ in wm.adapter.backbone.named_parameters())


def test_gate_ablation_removes_event_mlp_gate_and_edls():
    wm = _model(gate=False)
    for fusion in wm.kvaf.fusions.values():
        assert fusion.event_mlp is None and fusion.gate is None and fusion.event_head is None
        assert not any(k in n for n, _ in fusion.named_parameters() for k in ("event", "gate"))
        torch.nn.init.normal_(fusion.to_video.to_out.weight, std=0.1)
    video, kvaf, actions = _clip()
    a, branch = _call(wm, video, kvaf, actions)
    assert branch["gates"] == [] and branch["events"] == []
    b, _ = _call(wm, video, -kvaf, actions)
    assert not torch.allclose(a, b, atol=1e-4)  # the bidirectional cross-attention still fuses
    wm.loss(video, actions, kvaf=kvaf)
    assert set(wm.last_losses) == {"video", "kvaf"}


def test_numeric_actions_ablation_has_no_kvaf_stream():
    wm = _model(conditioning="actions")
    assert wm.kvaf is None and not any("kvaf" in n for n, _ in wm.named_parameters())
    video, kvaf, actions = _clip()
    a, _ = _call(wm, video, kvaf, actions)
    b, _ = _call(wm, video, -kvaf, actions)
    assert torch.equal(a, b)


def test_numeric_stream_ablation_streams_the_actions_instead_of_the_kvaf_video():
    torch.manual_seed(0)
    wm = WorldModel.from_preset("wan2.1-tiny", "ee7", conditioning="kvaf", kvaf={"source": "numeric"})
    assert wm.conditioning(torch.zeros(B, T, 7)).names == ()  # no EgoWM injection: only the stream sees actions
    for fusion in wm.kvaf.fusions.values():
        torch.nn.init.constant_(fusion.gate.bias, 0.5)
    torch.nn.init.normal_(wm.kvaf.numeric.out.weight, std=0.5)
    video, _, actions = _clip()
    x0 = wm.encode(video)
    cond = wm.condition(video[:, 0], x0[:, 0], frames=T)
    t = torch.full((B,), 0.6)
    noisy = wm.objective.noisy(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)))

    def run(a):
        with torch.no_grad():
            return wm.net(noisy, t, cond, wm.conditioning(a, kvaf=numeric_inputs(wm.kvaf, a)))

    assert not torch.allclose(run(actions), run(-actions), atol=1e-4)
    loss = wm.loss(video, actions, generator=torch.Generator().manual_seed(0))  # no KVAF video needed
    assert torch.isfinite(loss) and set(wm.last_losses) == {"video", "edls"}
    loss.backward()  # every trainable parameter gets a gradient (DDP waits for all of them)
    assert all(p.grad is not None for p in wm.parameters() if p.requires_grad)


def test_kvaf_only_model_has_no_actions_branch_and_guidance_drops_each_branch():
    wm = _model(conditioning="kvaf")
    video, kvaf, actions = _clip()
    assert wm.conditioning(actions).names == ()
    both = _model()
    inputs = kvaf_inputs(both.encode(kvaf), torch.randn_like(both.encode(kvaf)))
    cond = both.conditioning(actions, kvaf=inputs)
    assert cond.names == ("actions", KVAF)
    assert cond.without([KVAF]).names == ("actions",) and cond.without(["actions"]).names == (KVAF,)
    stacked = Conditioning.stack([cond, cond.without([KVAF])], like=cond)
    assert torch.equal(stacked.branches[KVAF]["kvaf:keep"][B:], torch.zeros(B, inputs["kvaf:keep"].shape[1]))
    out = both.generate(
        video[:, 0], actions, steps=2, guidance={"actions": 2.0, KVAF: 2.0}, conditioning=Conditioning({KVAF: inputs})
    )
    assert out.shape == video.shape and torch.isfinite(out).all()


def test_non_wan_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="Wan backbones"):
        WorldModel.from_preset("cosmos-tiny", "ee7", conditioning="kvaf")
    with pytest.raises(ValueError, match="conditioning"):
        WorldModel.from_preset("wan2.1-tiny", "ee7", conditioning="pictures")


def test_kvaf_model_saves_and_loads(tmp_path):
    wm = _model()
    for fusion in wm.kvaf.fusions.values():
        torch.nn.init.constant_(fusion.gate.bias, 0.3)
    torch.nn.init.normal_(wm.kvaf.proj_out.weight, std=0.1)
    wm.save(tmp_path / "m")
    torch.manual_seed(123)  # another initialisation underneath the loaded weights
    back = WorldModel.load(tmp_path / "m")
    video, kvaf, actions = _clip()
    (a, branch_a), (b, branch_b) = _call(wm, video, kvaf, actions), _call(back, video, kvaf, actions)
    assert torch.equal(a, b) and torch.equal(branch_a["kvaf"], branch_b["kvaf"])
