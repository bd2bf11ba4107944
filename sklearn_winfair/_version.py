"""The package version, in one place (read by pyproject.toml and the package)."""

__version__ = "0.1.0.dev0"
