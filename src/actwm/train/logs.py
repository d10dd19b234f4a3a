"""What a run reports while it trains: `metrics.csv`, optional TensorBoard / wandb, the tqdm bar."""

from __future__ import annotations

import csv
from pathlib import Path

from tqdm.auto import tqdm

from actwm.io import atomic_write_text
from actwm.train.config import TrainConfig

METRICS = "metrics.csv"
METRICS_HEADER = ("step", "loss", "lr", "action_lr", "grad_norm", "seconds")


class MetricsLog:
    """`metrics.csv`: a header and one row per `log_every` steps, appended and flushed line by line.

    On resume the file is rewritten (atomically) with only the well-formed rows up to the resumed
    step, so a row torn by a crash or rows past the checkpoint never survive.
    """

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        rows = self._valid_rows(resume_step) if resume_step is not None and path.is_file() else []
        text = ",".join(METRICS_HEADER) + "\n" + "".join(",".join(r) + "\n" for r in rows)
        atomic_write_text(path, text)

    def _valid_rows(self, upto: int) -> list[list[str]]:
        out = []
        with open(self.path, newline="", encoding="utf-8", errors="replace") as fh:
            for row in list(csv.reader(fh))[1:]:
                if len(row) != len(METRICS_HEADER):
                    continue
                try:
                    [float(v) for v in row]
                except ValueError:
                    continue
                if int(row[0]) <= upto:
                    out.append(row)
        return out

    def append(self, values: dict[str, float]) -> None:
        line = ",".join(repr(float(values[k])) if k != "step" else str(int(values[k])) for k in METRICS_HEADER) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()


class Trackers:
    """Optional TensorBoard / wandb logging."""

    def __init__(self, cfg: TrainConfig, out: Path) -> None:
        self.tb = self.wandb = None
        # optional packages, imported only when a run asks for them
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ValueError(
                    "TrainConfig.tensorboard: needs the `tensorboard` package (pip install tensorboard)"
                ) from exc
            self.tb = SummaryWriter(str(out / "tensorboard"))
        if cfg.wandb_project:
            try:
                import wandb
            except ImportError as exc:
                raise ValueError("TrainConfig.wandb_project: needs the `wandb` package (pip install wandb)") from exc
            self.wandb = wandb.init(project=cfg.wandb_project, config=cfg.to_dict(), dir=str(out), resume="allow")

    def log(self, values: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for k, v in values.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"train/{k}": v for k, v in values.items() if k != "step"}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def progress_bar(total: int, initial: int, enabled: bool):
    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)


class StepLog:
    """Per-step reporting of one run: the bar every step, a `metrics.csv` row (and trackers) every
    `log_every` steps and at the run's last step, with the mean loss and seconds of the steps since the last row.
    Files are written by the main process only (`main`)."""

    def __init__(self, cfg: TrainConfig, out: Path, start_step: int, resumed: bool, main: bool, progress: bool):
        self.cfg = cfg
        self.metrics = MetricsLog(out / METRICS, start_step if resumed else None) if main else None
        self.trackers = Trackers(cfg, out) if main else None
        self.bar = progress_bar(cfg.steps, start_step, enabled=progress and main)
        self.window: list[float] = []
        self.seconds: list[float] = []

    def record(self, done: int, end: int, loss: float, seconds: float, lrs: tuple[float, float], norm: float | None):
        """Step `done` (1-based) of a call ending at `end` took `seconds` and gave `loss`; `lrs`: (lr, action lr)."""
        self.window.append(loss)
        self.seconds.append(seconds)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}")
        if self.metrics is None or not (done % self.cfg.log_every == 0 or done == end):
            return
        row = {
            "step": done,
            "loss": sum(self.window) / len(self.window),
            "lr": lrs[0],
            "action_lr": lrs[1],
            "grad_norm": float("nan") if norm is None else norm,
            "seconds": sum(self.seconds) / len(self.seconds),
        }
        self.metrics.append(row)
        self.trackers.log(row, done)
        self.window, self.seconds = [], []

    def close(self) -> None:
        self.bar.close()
        if self.trackers is not None:
            self.trackers.close()


__all__ = ["METRICS", "METRICS_HEADER", "MetricsLog", "Trackers", "StepLog", "progress_bar"]
