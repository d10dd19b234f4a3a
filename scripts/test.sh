#!/usr/bin/env bash
# The project's test command (README line 2, and what .ci/run calls): install everything the tests use on a
# clean machine, check the layer contracts and the style, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip() { python -m pip install --quiet "$@"; }
pip torch==2.13.0                         # the local CPU wheel; any other version pulls GBs of CUDA
pip -e ".[test]"
# lpips ships LPIPS's official linear heads; dreamsim's DINO ViT is a reference in one test.
# --no-deps: both would pull torchvision, which has no CPU build.
pip --no-deps lpips==0.1.4 dreamsim==0.2.1
# SAM2 (the learned tracker for SCS): a plain install would pull another torch and torchvision.
SAM2_BUILD_CUDA=0 pip --no-deps --no-build-isolation sam2==1.1.0
pip hydra-core==1.3.8 iopath==0.1.10 omegaconf==2.3.1 portalocker
ruff check .
ruff format --check .
lint-imports
python -m pytest -q -p no:cacheprovider "$@"
