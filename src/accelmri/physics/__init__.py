"""MRI physics: Fourier transforms, sampling masks, k-space truncation, coils, SENSE operator."""
