"""Installs prefjax; the metadata and dependencies are in pyproject.toml (this file serves older pips)."""

import setuptools

setuptools.setup()
