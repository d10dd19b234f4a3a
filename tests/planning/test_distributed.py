"""Episodes sharded over 2 processes (torch.distributed, gloo) give the results of one process."""

import json

import torch.distributed as dist
import torch.multiprocessing as mp

from actwm.planning.loop import PlannerConfig
from actwm.planning.runner import PlanRunConfig, run

CFG = PlanRunConfig(world_model="oracle", episodes=3, budget=4, planner=PlannerConfig(4, 3, 3), size=32, seed=1)


def _strip(result):
    for r in result["episodes"]:
        r.pop("seconds")
    result["summary"].pop("seconds_per_episode")
    result["fingerprint"].pop("processes")
    return result


def _worker(rank, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        result = run(CFG, progress=False)
        with open(f"{out}.{rank}", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2, join=True)
    sharded = [_strip(json.loads((tmp_path / f"out.{r}").read_text())) for r in (0, 1)]
    single = _strip(json.loads(json.dumps(run(CFG, progress=False))))
    assert [e["episode"] for e in single["episodes"]] == [0, 1, 2]
    assert sharded[0] == single and sharded[1] == single
