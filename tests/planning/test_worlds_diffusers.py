"""The zero-shot world model: a real `WanImageToVideoPipeline` (tiny real parts, offline) driven by text prompts."""

import json

import numpy as np
import pytest
import torch

from actwm.planning.translate import text_prompt
from actwm.planning.worlds import make_world_model
from actwm.planning.worlds_diffusers import DiffusersI2VWorld, I2VConfig, closing_indices, safetensors_sha256
from tests.models.test_pipelines import flow_scheduler, tiny_umt5
from tests.models.test_pretrained import _save_wan_i2v
from tests.planning.conftest import free_episode

WORDS = "The camera moves forward by 0.25m. rotates left 22.5°. right stays still."


def tiny_tokenizer():
    """A real `PreTrainedTokenizerFast` (word level, 64 ids, trained on the template words)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([WORDS], trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def tiny_pipeline(root):
    """Wan 2.1 I2V layout from tiny real parts: transformer + CLIP image encoder + Wan VAE + UMT5 + tokenizer."""
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionModel

    _save_wan_i2v(root)
    torch.manual_seed(0)
    transformer = WanTransformer3DModel.from_pretrained(root / "transformer")
    with torch.no_grad():  # a visible text effect in 2 steps
        for p in transformer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    pipe = WanImageToVideoPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_umt5(),
        vae=AutoencoderKLWan.from_pretrained(root / "vae").eval(),
        scheduler=flow_scheduler(),
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        image_encoder=CLIPVisionModel.from_pretrained(root / "image_encoder").eval(),
        transformer=transformer.eval(),
    )
    return pipe


CFG = I2VConfig(steps=2, guidance=1.0, frames_per_action=2)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.mktemp("parts"))


@pytest.fixture
def world(pipe, mini_task):
    w = DiffusersI2VWorld(pipe, CFG)
    w.bind(mini_task)
    w.reset(seed=5)
    return w


def _obs(task):
    return task.reset(free_episode(task, scene=3, turns=2, forwards=2))


def test_imagine_shape_range_and_prompts_change_the_frames(world, mini_task):
    obs = _obs(mini_task)
    plans = np.array([[0, 0], [1, 2], [0, 0]])
    frames = world.imagine(obs, plans)
    assert frames.shape == (3, 2, 3, 32, 32) and frames.dtype == torch.float32
    assert float(frames.min()) >= 0 and float(frames.max()) <= 1
    world.reset(seed=5)
    again = world.imagine(obs, plans[[0, 0, 0]])  # plan 0 three times: rows 0 and 2 get the seeds of rows 0 and 2
    torch.testing.assert_close(again[0], frames[0])  # same plan, same seed -> the same frames
    assert (again[1] - frames[1]).abs().max() > 1e-3  # same seed (row 1), another prompt -> other frames
    assert (frames[0] - frames[2]).abs().max() > 1e-3  # same plan, another seed -> other frames


def test_candidates_in_one_batch_equal_candidates_run_alone(world, mini_task, monkeypatch):
    obs = _obs(mini_task)
    plans = np.array([[0, 1], [2, 0], [1, 1]])
    calls = []
    real_call = type(world.pipe).__call__
    monkeypatch.setattr(type(world.pipe), "__call__", lambda s, *a, **k: calls.append(k) or real_call(s, *a, **k))
    batched = world.imagine(obs, plans)
    assert len(calls) == 1 and calls[0]["prompt_embeds"].shape[0] == 3 and len(calls[0]["generator"]) == 3
    assert calls[0]["num_frames"] == 5  # L = 2 actions x 2 frames + 1 = 1 + 4*1 (Wan VAE rule)
    seeds = [5 * 100_003 + i for i in range(3)]
    for i in range(3):
        prompts = {"prompts": [text_prompt(mini_task.vocabulary, plans[i])], "horizon": 2}
        first = torch.from_numpy(obs.rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
        alone = world.generate(first, prompts, [seeds[i]])
        torch.testing.assert_close(batched[i], ((alone[0, 1:] + 1) / 2).clamp(0, 1), atol=1e-4, rtol=1e-4)


def test_prompt_embeddings_match_the_pipelines_own_encoding(world, monkeypatch):
    """Our encoding == `WanImageToVideoPipeline.encode_prompt` (text cleaning, which needs ftfy, bypassed)."""
    import diffusers.pipelines.wan.pipeline_wan_i2v as wan_i2v

    monkeypatch.setattr(wan_i2v, "prompt_clean", lambda text: text)
    prompts = ["The camera moves forward by 0.25m.", "The camera stays still. The camera rotates left by 22.5°."]
    theirs, _ = world.pipe.encode_prompt(prompts, do_classifier_free_guidance=False, max_sequence_length=512)
    torch.testing.assert_close(world.encode_prompts(prompts), theirs)


def test_frame_count_and_closing_frames(pipe):
    world = DiffusersI2VWorld(pipe, I2VConfig(frames_per_action=2))
    assert [world.num_frames(h) for h in (1, 2, 3)] == [5, 5, 9]  # 1 + 4n covering L * 2 frames (Wan VAE, k = 4)
    assert world.generation_size(30, 40) == (32, 48)  # rounded up to the VAE's 8 px x the 2 px patch
    assert closing_indices(9, 4).tolist() == [0, 2, 4, 6, 8]
    assert closing_indices(13, 3).tolist() == [0, 4, 8, 12]
    assert closing_indices(5, 3).tolist() == [0, 1, 3, 4]


def test_missing_weights_and_wrong_vocabulary_are_clear_errors(tmp_path, pipe):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        make_world_model(f"diffusers-i2v:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="not found"):
        make_world_model(f"diffusers-i2v:{tmp_path / 'missing'}")
    with pytest.raises(FileNotFoundError, match="huggingface-cli download no-such-org/no-such-model"):
        make_world_model("diffusers-i2v:no-such-org/no-such-model")

    class EE7Task:
        name, vocabulary, image_size = "push", __import__("actwm.planning").planning.get_vocabulary("ee7"), (32, 32)

    with pytest.raises(ValueError, match="does not fit task"):
        DiffusersI2VWorld(pipe, CFG).bind(EE7Task())


def test_plan_cli_with_a_saved_pipeline_loads_it_back_and_records_the_weights(pipe, tmp_path):
    from actwm.planning.cli import main

    pipe.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "plan.json"
    args = ["--task", "imagenav", "--world-model", f"diffusers-i2v:{tmp_path / 'pipe'}", "--proposer", "random"]
    args += ["--proposals", "2", "--horizon", "2", "--execute", "1", "--episodes", "1", "--budget", "2"]
    args += ["--size", "32", "--rollout-steps", "1", "--json", str(out), "--no-progress"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    fp = result["fingerprint"]["agent"]["world_model"]
    assert fp["type"] == "diffusers-i2v" and fp["source"] == str(tmp_path / "pipe")
    assert fp["pipeline"] == "WanImageToVideoPipeline" and fp["sampling"]["steps"] == 1
    assert fp["weights_sha256"] == safetensors_sha256(tmp_path / "pipe")
    assert "transformer/diffusion_pytorch_model.safetensors" in fp["weights_sha256"]
    assert result["summary"]["n"] == 1 and result["episodes"][0]["imagined_plans"] > 0
