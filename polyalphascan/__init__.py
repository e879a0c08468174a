"""polyalphascan: real-time covering-portfolio scanner for Polymarket."""
__version__ = "0.1.0"
