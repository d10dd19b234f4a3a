"""actwm.train: fine-tune video backbones into action-conditioned world models.

`train(TrainConfig.preset("tiny-cpu", data=..., out=...))` runs one process or, under
`accelerate launch` / `torchrun`, data-parallel; `actwm train` is the command line.
"""

from actwm.train.config import TrainConfig
from actwm.train.trainer import Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train"]
