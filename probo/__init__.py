"""Probo: an opinion-trading exchange for YES/NO contracts."""
