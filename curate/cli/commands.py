"""The list of CLI command modules; each exports ``COMMANDS`` (click commands/groups)."""

from importlib import import_module

_MODULES = [
    "curate.cli.init",
    "curate.cli.ingest",
    "curate.cli.embed",
    "curate.cli.train",
    "curate.cli.select",
    "curate.cli.simulate",
    "curate.cli.compare",
    "curate.cli.novelty",
    "curate.cli.demo",
    "curate.cli.labelstudio",
    "curate.cli.plot",
    "curate.cli.report",
]

COMMANDS = [cmd for name in _MODULES for cmd in import_module(name).COMMANDS]
