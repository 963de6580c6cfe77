"""ed-extractor: keep a verified local copy of Spansh's Elite Dangerous galaxy dumps."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ed-extractor")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
