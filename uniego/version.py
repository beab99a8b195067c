"""The package version (recorded in every store and checkpoint); its own module so that readers
of it do not import the package's __init__ (uniego.load_encoder)."""

__version__ = "0.1.0"
