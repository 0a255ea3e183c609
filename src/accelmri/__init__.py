"""accelmri — a PyTorch toolkit for accelerated MRI.

Layers (imports point down only): ``physics`` ← ``data`` ← ``models`` ← ``engine`` ← ``cli``;
``metrics`` is standalone.
"""

__version__ = "0.1.0"
