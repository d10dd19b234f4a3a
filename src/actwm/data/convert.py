"""Any reader -> LeRobot v3.0, and simulated episodes -> LeRobot v3.0; both resumable.

A killed run leaves the files committed so far plus `meta/.actwm_progress.json`; running the same
command again skips the committed episodes (without decoding them where the reader allows) and
finishes the dataset. The result equals an uninterrupted run's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tqdm.auto import tqdm

from actwm.data.gnm import GNM_FPS, GNMDataset
from actwm.data.lerobot import (
    PROGRESS_FILE,
    LeRobotDataset,
    LeRobotWriter,
    check_output_dir,
    check_writer_settings,
    committed_episodes,
    is_complete,
)
from actwm.data.onex import OneXDataset
from actwm.data.recon import RECON_FPS, ReconDataset
from actwm.episode import Episode
from actwm.io import read_json

FORMATS = ("gnm", "recon", "1x", "lerobot")
TEST_SEED_OFFSET = 1_000_000  # simulated test scenes use seeds from here on: disjoint from training seeds

# Called after each episode is handed to the writer (tests use it to simulate a crash).
EpisodeHook = Callable[[int, Episode], None]


def open_source(
    fmt: str,
    src: str | Path,
    *,
    dataset: str | None = None,
    fps: float | None = None,
    splits_dir: str | Path | None = None,
) -> Any:
    """Open `src` with the reader of format `fmt` (gnm, recon, 1x, lerobot)."""
    src = Path(src)
    if fmt not in FORMATS:
        raise ValueError(f"{src}: unknown source format {fmt!r}; known formats: {', '.join(FORMATS)}")
    if not src.exists():
        raise FileNotFoundError(f"{src}: source not found")
    if fmt == "gnm":
        return GNMDataset(src, dataset=dataset, splits_dir=splits_dir, fps=fps or GNM_FPS)
    if fmt == "recon":
        return ReconDataset(src, fps=fps or RECON_FPS)
    if fmt == "1x":
        return OneXDataset(src)
    return LeRobotDataset(src)


def _iter_from(reader: Any, start: int) -> Iterator[Episode]:
    if hasattr(reader, "iter_episodes"):
        yield from reader.iter_episodes(start)
    else:
        for i in range(start, len(reader)):
            yield reader.episode(i)


def write_episodes(
    dst: str | Path,
    episodes: Iterable[Episode],
    *,
    total: int,
    skip: int = 0,
    writer_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    on_episode: EpisodeHook | None = None,
    desc: str = "episodes",
) -> Path:
    """Write `episodes` (which start at episode `skip` of `total`) into a LeRobot v3.0 store at `dst`.

    The writer is created from the first episode's fps/action space unless the root is partial.
    """
    dst = Path(dst)
    writer = None
    if (dst / PROGRESS_FILE).is_file():  # resume: the settings must match the partial root's (checked by the writer)
        cfg = read_json(dst / PROGRESS_FILE)["config"]
        writer = LeRobotWriter(dst, fps=cfg["fps"], action_space=cfg["action_space"], **(writer_kwargs or {}))
    bar = tqdm(total=total, initial=skip, desc=desc, unit="ep", disable=not progress)
    try:
        for ep in episodes:
            if writer is None:
                writer = LeRobotWriter(dst, fps=ep.fps, action_space=ep.action_space, **(writer_kwargs or {}))
            idx = writer.add_episode(ep)
            bar.update(1)
            if on_episode is not None:
                on_episode(idx, ep)
        if writer is None:
            raise ValueError(f"{dst}: no episodes to write")
        return writer.finalize()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()


def convert(
    fmt: str,
    src: str | Path,
    dst: str | Path,
    *,
    dataset: str | None = None,
    split: str | None = None,
    fps: float | None = None,
    splits_dir: str | Path | None = None,
    frames_per_file: int = 2000,
    crf: int = 18,
    pix_fmt: str = "yuv420p",
    progress: bool = True,
    on_episode: EpisodeHook | None = None,
) -> Path:
    """Convert `src` (format `fmt`) into a LeRobot v3.0 store at `dst`; resumes a partial `dst`.

    `split` labels episodes that carry no split of their own (e.g. `--split test` for a 1X val folder).
    Bad options, an unusable `dst` or an unreadable source raise ValueError / FileNotFoundError before
    anything is written.
    """
    # 1. options and paths, before any work
    check_writer_settings(frames_per_file=frames_per_file, crf=crf, pix_fmt=pix_fmt)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"--fps must be a positive number, got {fps}")
    dst = check_output_dir(dst, "destination")
    if dst.resolve() == Path(src).resolve():
        raise ValueError(f"destination {dst}: is the source itself; choose another directory")
    # 2. the source, and the job a partial or complete destination must have been written for
    reader = open_source(fmt, src, dataset=dataset, fps=fps, splits_dir=splits_dir)
    job = {"convert": fmt, "source": str(Path(src).resolve()), "dataset": dataset, "split": split, "fps": fps}
    job["episodes"] = len(reader)
    if is_complete(dst, job):
        return dst
    skip = committed_episodes(dst)

    def episodes() -> Iterator[Episode]:
        for ep in _iter_from(reader, skip):
            if split is not None and not ep.meta.get("split"):
                ep.meta["split"] = split
            yield ep

    # 3. the episodes not yet committed
    writer_kwargs = {"frames_per_file": frames_per_file, "crf": crf, "pix_fmt": pix_fmt, "job": job}
    writer_kwargs["info_extra"] = _source_info(reader, fmt, src)
    return write_episodes(
        dst,
        episodes(),
        total=len(reader),
        skip=skip,
        writer_kwargs=writer_kwargs,
        progress=progress,
        on_episode=on_episode,
        desc=f"convert {fmt}",
    )


def _source_info(reader: Any, fmt: str, src: str | Path) -> dict[str, Any]:
    """What info.json records about a converted source (format, path, dataset name, metric spacing)."""
    spacing = getattr(reader, "metric_spacing", None) or getattr(reader, "info", {}).get("actwm", {}).get(
        "metric_spacing"
    )
    info: dict[str, Any] = {"source_format": fmt, "source": str(src)}
    if getattr(reader, "dataset", None):
        info["dataset"] = reader.dataset
    if spacing is not None:
        info["metric_spacing"] = float(spacing)
    return info


def simulation_seeds(episodes: int, test_episodes: int, seed: int) -> list[tuple[int, str]]:
    """(seed, split) per simulated episode: training seeds `seed..`, test seeds from `TEST_SEED_OFFSET + seed`."""
    if episodes < 0 or test_episodes < 0 or episodes + test_episodes < 1:
        raise ValueError(f"simulate: need at least one episode, got {episodes} train + {test_episodes} test")
    if seed < 0 or seed + episodes > TEST_SEED_OFFSET:
        raise ValueError(f"simulate: training seeds must lie in [0, {TEST_SEED_OFFSET}), got {seed}..{seed + episodes}")
    return [(seed + i, "train") for i in range(episodes)] + [
        (TEST_SEED_OFFSET + seed + i, "test") for i in range(test_episodes)
    ]


def simulate(
    kind: str,
    out: str | Path,
    *,
    episodes: int,
    frames: int,
    size: int = 64,
    seed: int = 0,
    test_episodes: int = 0,
    frames_per_file: int = 2000,
    crf: int = 0,
    pix_fmt: str = "yuv444p",
    progress: bool = True,
    on_episode: EpisodeHook | None = None,
    policy_kwargs: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Record `episodes` (+ `test_episodes` in disjoint scenes) with `actwm.sim` into LeRobot v3.0 at `out`.

    `policy_kwargs` go to the scripted explorer (nav: `speed` m/step, `turn_rate` rad/step); `env_kwargs`
    to the world (e.g. `supersample=3`: anti-aliased renders).

    Video defaults to near-lossless yuv444p/crf 0 (~0.4/255 mean error): simulated renders are the ground
    truth a world model learns, and at 32-64 px yuv420p/crf 18 lost 6-9/255 on their textures.
    """
    # 1. options and paths, before any work
    _check_simulate_options(kind, frames, size)
    check_writer_settings(frames_per_file=frames_per_file, crf=crf, pix_fmt=pix_fmt)
    out = check_output_dir(out, "--out")
    plan = simulation_seeds(episodes, test_episodes, seed)
    # 2. the job a partial or complete --out must have been written for
    job = {
        "simulate": kind,
        "episodes": episodes,
        "test_episodes": test_episodes,
        "seed": seed,
        "frames": frames,
        "size": size,
        **({"policy": dict(policy_kwargs)} if policy_kwargs else {}),
        **({"env": dict(env_kwargs)} if env_kwargs else {}),
    }
    if is_complete(out, job):
        return out
    skip = committed_episodes(out)
    todo = plan[skip:]
    # 3. record the episodes not yet committed
    sim_kwargs = {"frames": frames, "size": size, "policy_kwargs": policy_kwargs, "env_kwargs": env_kwargs}
    writer_kwargs = {"frames_per_file": frames_per_file, "crf": crf, "pix_fmt": pix_fmt, "job": job}
    writer_kwargs["info_extra"] = {"source_format": "actwm.sim", "world": kind, "size": size}
    return write_episodes(
        out,
        _label_splits(_record(kind, [s for s, _ in todo], sim_kwargs), todo),
        total=len(plan),
        skip=skip,
        writer_kwargs={**writer_kwargs, "robot_type": f"actwm.sim.{kind}"},
        progress=progress,
        on_episode=on_episode,
        desc=f"simulate {kind}",
    )


def _check_simulate_options(kind: str, frames: int, size: int) -> None:
    if kind not in ("nav", "manip"):
        raise ValueError(f"simulate: unknown world {kind!r}; choose nav or manip")
    if frames < 2:
        raise ValueError(f"simulate: --frames must be >= 2, got {frames}")
    if size < 8:
        raise ValueError(f"simulate: --size must be >= 8 pixels, got {size}")


def _record(kind: str, seeds: list[int], sim_kwargs: dict[str, Any]) -> Iterator[Episode]:
    """Episodes of world `kind` for `seeds` (none if empty), from actwm.sim's scripted explorer."""
    if not seeds:
        return
    # lazy: actwm.sim loads pybullet and gymnasium (~2.5 s), which reading or converting data never needs
    from actwm.sim import record_episodes

    yield from record_episodes(kind, seeds=seeds, progress=False, **sim_kwargs)


def _label_splits(episodes: Iterator[Episode], plan: list[tuple[int, str]]) -> Iterator[Episode]:
    """Episodes come in seed order: label each with its planned seed and split."""
    n = 0
    for ep, (seed, split) in zip(episodes, plan):
        ep.meta["seed"] = int(ep.meta.get("seed", seed))
        ep.meta["split"] = split
        n += 1
        yield ep
    if n != len(plan):
        raise RuntimeError(f"simulate: the simulator produced {n} episodes for {len(plan)} seeds")
