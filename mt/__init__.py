"""mt: neural machine translation you can train, use, see and measure."""

__version__ = "0.2.0"
