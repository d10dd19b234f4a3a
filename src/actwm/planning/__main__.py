"""`python -m actwm.planning ...` == `actwm plan ...` (also the torchrun entry point)."""

import sys

from actwm.planning.cli import main

sys.exit(main())
