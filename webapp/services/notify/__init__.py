"""Telling people: which notices are due, their words and links, and delivering them once over SMTP."""
