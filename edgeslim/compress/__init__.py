"""Compression stages (filled by the compression issue). Importing this registers custom layers."""
