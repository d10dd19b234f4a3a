"""A world model over HTTP: `actwm serve CHECKPOINT` and the client adapter ("http://HOST:PORT").

    actwm serve runs/demo/model --host 127.0.0.1 --port 8000
    actwm plan --world-model http://127.0.0.1:8000 ...

`POST /imagine`: body = an `.npz` (never pickle: `np.load(allow_pickle=False)`) with `rgb` (H, W, 3) uint8,
`plans` (M, L) int64 or (M, L, D) float64, `vocabulary` (a string), `seed` and `call` (ints); the answer is an
`.npz` with `frames` (M, L, 3, H, W) float32 in [0, 1]. Requests over `max_bytes` get 413, malformed ones 400,
plans or images the model cannot take 422; the server keeps serving. `GET /health` describes the model.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import torch
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from actwm.errors import ArgumentParser
from actwm.planning.interface import Observation, Task, get_vocabulary, register_world_model
from actwm.planning.worlds import VideoWorld, check_fits, make_world_model
from actwm.rollout.rollout import RolloutConfig

NPZ = "application/octet-stream"


@dataclass
class _ServedTask:
    """What a served model is bound to: a vocabulary and an image size (no simulator)."""

    vocabulary: Any
    image_size: tuple[int, int]
    name: str = "served"
    env: Any = None
    budget: int = 0


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _read_request(body: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as e:  # any unreadable body is the client's error
        raise ValueError(f"body is not a readable .npz without pickles ({type(e).__name__})") from None
    missing = {"rgb", "plans", "vocabulary", "seed", "call"} - set(arrays)
    if missing:
        raise ValueError(f"request lacks arrays {sorted(missing)}")
    return arrays


def create_app(world: VideoWorld, image_size: tuple[int, int], max_bytes: int = 16 << 20) -> FastAPI:
    """A FastAPI app serving `world` (bound per request to the requested vocabulary at `image_size`)."""
    app = FastAPI(title="actwm world model")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "world_model": world.fingerprint(),
            "image_size": list(image_size),
            "vocabularies": list(world.vocabularies),
        }

    @app.post("/imagine")
    async def imagine(request: Request) -> Response:
        if int(request.headers.get("content-length", "0")) > max_bytes:
            return JSONResponse({"error": f"request over {max_bytes} bytes"}, status_code=413)
        body = await request.body()
        if len(body) > max_bytes:
            return JSONResponse({"error": f"request over {max_bytes} bytes"}, status_code=413)
        try:
            req = _read_request(body)
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        try:
            world.bind(_ServedTask(get_vocabulary(str(req["vocabulary"])), image_size))
            world.reset(int(req["seed"]))
            world._calls = int(req["call"])
            frames = world.imagine(Observation(rgb=req["rgb"]), req["plans"])
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=422)
        return Response(_npz(frames=frames.numpy().astype(np.float32)), media_type=NPZ)

    return app


@register_world_model("http")
class HttpWorld:
    """Client adapter: the same `ImaginedWorld` interface, imagining on a remote `actwm serve`."""

    name = "http"
    is_oracle = False

    def __init__(self, url: str, timeout: float = 600.0, **_: Any) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)
        self.task: Task | None = None
        self.seed, self._calls = 0, 0
        self.remote: dict[str, Any] = {}

    @property
    def vocabularies(self) -> tuple[str, ...]:
        return tuple(self.remote.get("vocabularies", ()))

    def bind(self, task: Task) -> None:
        self.remote = self.client.get(f"{self.url}/health").raise_for_status().json()
        check_fits(f"remote world model at {self.url}", task, self.vocabularies, self.remote["image_size"])
        self.task = task

    def reset(self, seed: int) -> None:
        self.seed, self._calls = seed, 0

    def imagine(self, observation: Observation, plans: np.ndarray) -> torch.Tensor:
        plans = self.task.vocabulary.validate(plans)
        body = _npz(
            rgb=observation.rgb,
            plans=plans,
            vocabulary=np.array(self.task.vocabulary.name),
            seed=np.array(self.seed),
            call=np.array(self._calls),
        )
        self._calls += 1
        r = self.client.post(f"{self.url}/imagine", content=body, headers={"content-type": NPZ})
        if r.status_code != 200:
            raise ValueError(f"remote world model at {self.url}: HTTP {r.status_code}: {r.text[:300]}")
        with np.load(io.BytesIO(r.content), allow_pickle=False) as data:
            return torch.from_numpy(data["frames"])

    def fingerprint(self) -> dict[str, Any]:
        return {"type": "http", "url": self.url, "remote": self.remote.get("world_model")}


def main(argv: list[str] | None = None) -> int:
    """`actwm serve CHECKPOINT [--host 127.0.0.1] [--port 8000] [--max-mb 16] [--steps 10]`."""
    import uvicorn  # lazy: only the server needs it

    p = ArgumentParser(prog="actwm serve", description="serve a world model over HTTP")
    p.add_argument("checkpoint")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-mb", type=float, default=16.0)
    p.add_argument("--steps", type=int, default=10, help="denoising steps")
    args = p.parse_args(argv)
    world = make_world_model(args.checkpoint, rollout_cfg=RolloutConfig(steps=args.steps))
    if world.image_size is None:
        raise ValueError(f"{args.checkpoint}: the model records no image size; it cannot be served")
    app = create_app(world, world.image_size, int(args.max_mb * (1 << 20)))
    uvicorn.run(app, host=args.host, port=args.port)
    return 0
