"""Dispatch: intake API for source systems, routing, tickets and their lifecycle, SLA clocks."""
