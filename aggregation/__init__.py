"""Differentially private statistics, released only under the citizens' signed terms."""
