"""Argument types shared by the management commands: argparse refuses a bad value with the option's
name before the command changes anything."""

import argparse
from pathlib import Path


def path_name(value: str) -> Path:
    # An empty name would mean the working directory, or, where the option is optional, that no file
    # was named at all: a script's unset variable (`-o "$OUT"`) must not send the rows elsewhere.
    if not value:
        raise argparse.ArgumentTypeError("give a path, not an empty one")
    return Path(value)
