"""The build pipeline: recipe → source → plan → executor → worker → shard writer → index.

- ``recipes``: packaged recipe files to a source module's ``make_source(params)``.
- ``plan``: a split's records to shard tasks, streamed (unique keys, seeded order, cuts).
- ``fingerprint``: what a shard's bytes depend on, and what changed since it was written.
- ``safety``: which files a build owns, overlap checks, ``--overwrite``.
- ``build``: plans, skips finished shards, runs the rest, publishes indexes and cards.
"""

from .build import BuildOptions, BuildReport, SplitReport, build

__all__ = ["BuildOptions", "BuildReport", "SplitReport", "build"]
