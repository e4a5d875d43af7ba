"""Ingestion of request outcomes: every path (file, writer, HTTP) ends in ``load.load_table``."""
