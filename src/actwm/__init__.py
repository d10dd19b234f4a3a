"""actwm: action-conditioned world models from pretrained video diffusion backbones."""

__version__ = "0.1.0"
