"""Doors: adapters from each wire format to the one pipeline. They never import each other."""
