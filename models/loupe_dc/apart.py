"""Measuring a graph in a process of its own, so that the peak memory read there is the graph's alone.

The measuring module runs itself as `python -m MODULE --run GRAPH --result FILE [flags]` (`run_apart`); its
`main` takes those two flags (`add_worker_flags`) and writes its figures to FILE as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def add_worker_flags(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)


def run_apart(module: str, graph: Path, result: Path, **flags: int) -> dict:
    """The figures `module` measured on `graph` in a child process, with the size of the graph's files."""
    args = [f"--{k.replace('_', '-')}={v}" for k, v in flags.items()]
    subprocess.run([sys.executable, "-m", module, "--run", str(graph), "--result", str(result), *args], check=True)
    row = json.loads(result.read_text())
    row["file_mb"] = round(sum(f.stat().st_size for f in graph.parent.glob(graph.name + "*")) / 2 ** 20)
    return row
