"""The configuration layer: what jobs.yaml, schedules.yaml and the environment say, as frozen dataclasses.

Reads files and the environment only: no Redis, no Dramatiq, no Litestar (an import-linter contract keeps it so).
"""
