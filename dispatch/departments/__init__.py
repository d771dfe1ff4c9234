"""The departments directory: who exists, who escalations reach, and their webhooks."""
