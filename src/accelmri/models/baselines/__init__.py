"""Baseline models the papers compare against, one file each (design/models.md).

- :mod:`~accelmri.models.baselines.interpolation`: ``bicubic`` and ``sinc`` (k-space zero-padding) upsampling.
- :mod:`~accelmri.models.baselines.zero_filled`: the zero-filled LR image, upsampled.
- :mod:`~accelmri.models.baselines.cg_sense`: classical CG-SENSE (Pruessmann et al., MRM 2001), upsampled.
- :mod:`~accelmri.models.baselines.edsr`: single-contrast EDSR super-resolution (Lim et al., CVPRW 2017).
- :mod:`~accelmri.models.baselines.early_fusion`: multi-contrast SR by concatenating the HR reference.
- :mod:`~accelmri.models.baselines.unet`: the fastMRI image-domain U-Net (Zbontar et al., 2018).
- :mod:`~accelmri.models.baselines.modl`: MoDL unrolled reconstruction (Aggarwal et al., IEEE TMI 2019).
- :mod:`~accelmri.models.baselines.sequential`: any reconstruction model followed by any SR model.

Importing a module registers its models (:func:`accelmri.models.registry.register`).
"""
