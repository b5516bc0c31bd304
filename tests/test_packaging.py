"""The folder -> package mapping in pyproject.toml covers every package folder."""

import tomllib
from pathlib import Path

import curate

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_and_maps_under_curate():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, dirs = set(cfg["packages"]), cfg["package-dir"]
    assert all(name == "curate" or name.startswith("curate.") for name in dirs)
    found = set()
    for pkg, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((pkg, *rel)))
    assert found == listed


def test_mapped_packages_import_from_the_curate_namespace():
    import curate.db
    import curate.integrations
    import curate.trainers

    for mod in (curate.db, curate.trainers, curate.integrations):
        assert mod.__name__.startswith("curate.")
    assert Path(curate.__file__).parent.name == "curate"
