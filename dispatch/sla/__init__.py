"""SLA clocks: working-day calendars, per-category policies and the deadlines they give."""
