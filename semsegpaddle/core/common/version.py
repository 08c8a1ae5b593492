"""The package version, in the leaf so every layer can record it without importing the package top."""
__version__ = "0.1.0"
