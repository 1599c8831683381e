"""Measured comparisons; each writes JSON under results/ and prints a table."""
