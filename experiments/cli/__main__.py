"""``python -m dlvm.experiments.cli`` (torchrun starts the command line this way)."""
import sys

from . import main

sys.exit(main())
