"""The version of prefkit: its one owner (``pyproject.toml`` reads it statically, ``prefkit.__version__`` re-exports
it), in a module of its own so that any module can import it without importing the package's lazy API."""

__version__ = "0.3.0"
