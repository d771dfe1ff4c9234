"""Correlation: reports of the same kind of problem, near each other and close in time, from any
source, become members of one incident."""
