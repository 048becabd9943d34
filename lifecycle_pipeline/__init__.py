"""A tabular model's production lifecycle as Dagster software-defined assets."""

__version__ = "0.1.0"
