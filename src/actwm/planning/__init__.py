"""actwm.planning: closed-loop planning with any world model (propose -> imagine -> revise -> execute).

See `actwm.planning.interface` for the types and protocols every piece implements.
"""

from actwm.planning.interface import (
    NAV_PRIMITIVES,
    VOCABULARIES,
    ImaginedWorld,
    Observation,
    Proposer,
    Scorer,
    Task,
    Vocabulary,
    get_vocabulary,
    register_world_model,
    registered_world_models,
)

__all__ = [
    "NAV_PRIMITIVES",
    "VOCABULARIES",
    "ImaginedWorld",
    "Observation",
    "Proposer",
    "Scorer",
    "Task",
    "Vocabulary",
    "get_vocabulary",
    "register_world_model",
    "registered_world_models",
]
