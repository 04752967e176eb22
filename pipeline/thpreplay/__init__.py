"""thpreplay: replay Linux page-allocation traces through per-kernel-era THP policies."""

from thpreplay.errors import ThpreplayError

__version__ = "0.1.0"
__all__ = ["ThpreplayError", "__version__"]
