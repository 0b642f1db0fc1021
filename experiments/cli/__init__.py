"""The ``dlvm`` command line: the parser and dispatch (main.py), what each command does
(commands.py), flags generated from the models' options (flags.py), checks of the arguments
(checks.py)."""
from .main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
