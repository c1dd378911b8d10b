"""crossprobe: does a linear probe found in one language model mean the same thing in another?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crossprobe")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
