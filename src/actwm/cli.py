"""The `actwm` command: a thin dispatcher to each sub-command's own `main(argv)`.

Each sub-command lives beside the code it drives and is imported lazily, so `actwm --help`
stays fast and a missing optional dependency only affects the command that needs it. Every command runs
inside one error boundary (`actwm.errors.run_guarded`): bad input is one line on stderr and exit code 2;
`--debug` anywhere on the command line shows the traceback instead.
"""

from __future__ import annotations

import importlib
import sys

from actwm import __version__
from actwm.errors import run_guarded

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("actwm.demo", "run the embedded end-to-end job: simulate, fine-tune, roll out, evaluate, report"),
    "data": ("actwm.data.cli", "simulate, convert and inspect datasets (LeRobot v3.0 store)"),
    "train": ("actwm.train.cli", "fine-tune a video backbone into an action-conditioned world model"),
    "rollout": ("actwm.rollout.cli", "imagine the future of a start frame under an action sequence"),
    "eval": ("actwm.eval.cli", "score predicted videos against ground truth (SCS, PSNR, SSIM, LPIPS, FVD, ...)"),
    "policy-eval": ("actwm.eval.policy", "Pearson / MMRV between world-model and real success rates"),
    "plan": (
        "actwm.planning.cli",
        "closed-loop planning with any world model, judged by task success",
    ),
    "serve": ("actwm.planning.serve", "serve a world model's imagine() over HTTP (npz in and out, never pickle)"),
    "kvaf": ("actwm.robots.cli", "render Kinematic-to-Visual Action Fields of a dataset episode, recover actions"),
    "info": ("actwm.models.cli", "list backbone presets and action spaces"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: actwm <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {doc}" for name, (_, doc) in COMMANDS.items()]
    lines += ["", "Run `actwm <command> --help` for the options of one command; add --debug to see tracebacks."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"actwm: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return run_guarded(name, lambda args: importlib.import_module(COMMANDS[name][0]).main(args), rest)


if __name__ == "__main__":
    raise SystemExit(main())
