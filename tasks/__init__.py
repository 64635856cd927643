"""The tasks of the search spaces: image classification (classification.py)."""
