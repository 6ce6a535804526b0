"""xcurate: data-centric curation for cross-domain offline reinforcement learning."""

__version__ = "0.1.0"

from xcurate.errors import XcurateError  # noqa: E402

__all__ = ["XcurateError", "__version__"]
