"""The package list pyproject.toml cannot compute: the four code folders installed under
``concbench/`` (why: concbench/__init__.py). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

FOLDERS = ("bench", "clients", "protocol", "servers")

setup(
    packages=["concbench"] + [f"concbench.{name}"
                              for name in find_packages(include=[f"{f}*" for f in FOLDERS])],
    package_dir={"concbench": "concbench", **{f"concbench.{f}": f for f in FOLDERS}},
    package_data={"concbench.bench": ["scenarios/*.toml", "selfcheck/*.c", "run/*.c"],
                  "concbench.servers": ["native/*.c"]},
)
