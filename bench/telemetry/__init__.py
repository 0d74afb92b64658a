"""Measurement windows: each one opened and closed around the code it measures."""
