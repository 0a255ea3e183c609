"""Data: readers, pairing, datasets."""
