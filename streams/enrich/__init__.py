"""Enrichment: every normalised event leaves classified (category, priority, confidence) and
located (H3 cell, district), or flagged for a person to decide. Pure functions over the pack."""
