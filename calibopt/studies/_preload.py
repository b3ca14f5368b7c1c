"""Imported once by the forkserver of a study's workers: load the methods and compile the
serial kernels there, so that every worker forked from it starts warm."""

from __future__ import annotations

from .worker import warm_up

warm_up()
