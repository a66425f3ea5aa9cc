"""Model families as data: `assets/families.toml` read once, and what a model file's family is.

Below comfy/ and learning/: both read the registry, it imports neither.
"""
