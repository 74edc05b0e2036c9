"""The `vivify` command (entry point `app.cli:main`).

commands.py parses the arguments and runs the commands, supervisor.py builds and supervises the worker
processes, render.py renders one clip locally for `vivify animate`, client.py talks to a running
service for `vivify animate --server`.
"""

from app.cli.commands import main

__all__ = ["main"]
