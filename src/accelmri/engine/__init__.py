"""Engine: runs experiments built from data, models, losses and metrics."""
