"""Numbered schema revisions, applied in order by ``broker.storage.migrate``."""
