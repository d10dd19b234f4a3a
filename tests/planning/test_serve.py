"""The HTTP world model: imagine over 127.0.0.1 == imagine in process; bad requests get 4xx, the server lives."""

import io
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import torch
import uvicorn

from actwm.models.world_model import WorldModel
from actwm.planning.interface import get_vocabulary
from actwm.planning.serve import HttpWorld, create_app
from actwm.planning.translate import FrameStep
from actwm.planning.worlds import CheckpointWorld
from actwm.rollout.rollout import RolloutConfig
from tests.planning.conftest import MiniImageNav, free_episode


@pytest.fixture(scope="module")
def served():
    torch.manual_seed(0)
    wm = WorldModel.from_preset("wan2.1-tiny", "nav3", image_size=[32, 32], clip_frames=9).eval()
    world = CheckpointWorld(wm, RolloutConfig(steps=2), frame_step=FrameStep(0.13, 0.4))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(world, (32, 32), max_bytes=200_000), "127.0.0.1", port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield wm, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_http_imagine_equals_in_process_imagine(served, mini_task):
    wm, url = served
    local = CheckpointWorld(wm, RolloutConfig(steps=2), frame_step=FrameStep(0.13, 0.4))
    remote = HttpWorld(url)
    obs = mini_task.reset(free_episode(mini_task, scene=3, turns=2, forwards=2))
    plans = np.array([[0, 1], [2, 0]])
    for world in (local, remote):
        world.bind(mini_task)
        world.reset(seed=4)
    for _ in range(2):  # the second call uses the next noise seeds on both sides
        torch.testing.assert_close(remote.imagine(obs, plans), local.imagine(obs, plans), atol=0, rtol=0)


def test_remote_world_refuses_a_task_of_another_frame_size(served):
    """Binding checks the served model's frame size (and vocabulary) before any imagination, as local worlds do."""
    _, url = served
    task = MiniImageNav(size=48)
    try:
        with pytest.raises(ValueError, match=rf"world model at {url} takes 32x32 frames; task .* observes 48x48"):
            HttpWorld(url).bind(task)
    finally:
        task.close()
    pushed = MiniImageNav()
    pushed.vocabulary = get_vocabulary("ee7")
    try:
        with pytest.raises(ValueError, match="does not fit task 'imagenav-mini', whose agent acts in 'ee7'"):
            HttpWorld(url).bind(pushed)
    finally:
        pushed.close()


def test_bad_requests_get_4xx_and_the_server_keeps_serving(served):
    _, url = served
    post = lambda body: httpx.post(f"{url}/imagine", content=body, timeout=60)  # noqa: E731
    assert post(b"not an npz").status_code == 400
    buf = io.BytesIO()
    np.savez(
        buf,
        rgb=np.zeros((32, 32, 3), np.uint8),
        plans=np.array([[9, 0]]),
        vocabulary=np.array("nav_discrete"),
        seed=np.array(0),
        call=np.array(0),
    )
    r = post(buf.getvalue())
    assert r.status_code == 422 and "outside the nav_discrete vocabulary" in r.text
    buf = io.BytesIO()
    np.savez(
        buf,
        rgb=np.zeros((32, 32, 3), np.uint8),
        plans=np.zeros((1, 2), np.int64),
        vocabulary=np.array(np.array([object()], dtype=object)),
        seed=np.array(0),
        call=np.array(0),
    )
    assert post(buf.getvalue()).status_code == 400  # an object array needs pickle: refused
    assert post(b"x" * 300_000).status_code == 413
    assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"
