"""Canonical records that cross process boundaries. A leaf: imports nothing of the hub's."""
