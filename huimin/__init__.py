"""Shared core of Huimin: settings, database and the command line."""
