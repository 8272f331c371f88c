"""Serving engine: worker processes, the dynamic tile batcher, and the decoded-tile cache."""
