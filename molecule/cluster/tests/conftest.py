"""Make the shared lab helpers importable from both test directories."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
