"""Readers for raw MRI data files (Siemens twix, ...), returning accelmri-convention torch tensors."""
