"""Offline tools that build the geographic data the ``geo`` package reads (run by hand)."""
