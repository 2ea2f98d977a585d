"""The bureau staff's web UI."""
