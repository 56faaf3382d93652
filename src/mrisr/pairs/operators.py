"""The LR forward operators: ways an acquisition at a coarser grid sees an HR volume, and Rician noise.

Each operator maps an HR volume onto the edge-aligned LR grid of
:mod:`mrisr.grids` (LR voxel j covers HR voxels [t j, t (j + 1)), t the
true factor, so its centre is HR index t j + (t - 1) / 2):

- ``spline``: optional Gaussian anti-alias pre-filter, spline resampling (the
  project's first degradation);
- ``block``: the mean over each LR voxel's extent (a voxel as a box of signal);
- ``kspace``: the central frequencies of the HR spectrum, the LR size of them
  (what a scanner's shorter readout and fewer phase encodes measure);
- ``slice``: a thick-slice acquisition: along every coarser axis, LR voxel j
  is the HR signal weighted by a slice profile (Gaussian with a FWHM of the
  slice thickness, or a box as wide as it) centred on the LR voxel centre,
  the thickness being the slice spacing less an optional gap.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import fft, ndimage, special

from ..grids import resample


def spline_downsample(volume: np.ndarray, factors: np.ndarray, lr_shape: Sequence[int], order: int,
                      antialias: bool) -> np.ndarray:
    """Gaussian pre-filter (sigma = (f - 1) / 2 HR voxels per axis) when ``antialias``, then spline resampling."""
    if antialias and np.any(factors > 1):
        volume = ndimage.gaussian_filter(volume, sigma=(factors - 1) / 2, mode="nearest")
    return resample(volume, lr_shape, order=order)


def area_weights(hr_size: int, lr_size: int) -> np.ndarray:
    """``(lr_size, hr_size)`` weights: the share of LR voxel j's extent that HR voxel i covers.

    Exact for any factor: with an integer factor each row averages one block
    of HR voxels; with a fractional one the HR voxels cut by an LR voxel edge
    count with the part of them inside it.
    """
    true_factor = hr_size / lr_size
    edges = np.arange(lr_size + 1) * true_factor
    starts = np.arange(hr_size)
    overlap = np.minimum(edges[1:, None], starts[None, :] + 1) - np.maximum(edges[:-1, None], starts[None, :])
    return np.clip(overlap, 0, None) / true_factor


def _along_axes(volume: np.ndarray, weights_for_axis) -> np.ndarray:
    """``volume`` with the matrix ``weights_for_axis(axis, size)`` (or None: unchanged) applied along each axis."""
    result = np.asarray(volume, dtype=np.float64)
    for axis, size in enumerate(volume.shape):
        weights = weights_for_axis(axis, size)
        if weights is not None:
            result = np.moveaxis(np.tensordot(weights, result, axes=([1], [axis])), 0, axis)
    return result.astype(np.float32)


def block_average(volume: np.ndarray, lr_shape: Sequence[int]) -> np.ndarray:
    """The mean of the HR signal over each LR voxel's extent, one axis at a time."""
    return _along_axes(volume, lambda axis, size: None if size == lr_shape[axis]
                       else area_weights(size, lr_shape[axis]))


SLICE_PROFILES = ("gaussian", "box")
FWHM_PER_SIGMA = 2 * np.sqrt(2 * np.log(2))


def slice_thickness(true_factor: float, gap: float) -> float:
    """The slice thickness in HR voxels: the slice spacing (``true_factor``) less the ``gap`` share of it."""
    return true_factor * (1 - gap)


def slice_profile_weights(hr_size: int, lr_size: int, profile: str, gap: float) -> np.ndarray:
    """``(lr_size, hr_size)`` weights: how much of HR voxel i slice j measures (each row sums to 1).

    HR voxel i spans [i, i + 1) and slice j is centred on t (j + 1/2), t =
    ``hr_size / lr_size`` (the edge-aligned LR centre). A ``box`` profile is
    the slice thickness wide, so with no gap it is :func:`area_weights`; a
    ``gaussian`` has that FWHM and is integrated exactly over every HR voxel,
    its tails beyond the volume counting on the edge voxels (as the spline
    pre-filter's ``mode="nearest"`` does). A ``gap`` (share of the spacing)
    leaves the HR signal between box slices unmeasured.
    """
    if profile not in SLICE_PROFILES:
        raise ValueError(f"unknown slice profile {profile!r}; use one of {', '.join(SLICE_PROFILES)}")
    if not 0 <= gap < 1:
        raise ValueError(f"a slice gap is a share of the slice spacing in [0, 1), got {gap}")
    true_factor = hr_size / lr_size
    thickness = slice_thickness(true_factor, gap)
    centres = (np.arange(lr_size) + 0.5) * true_factor
    edges = np.arange(hr_size + 1, dtype=np.float64)
    if profile == "box":
        low, high = centres - thickness / 2, centres + thickness / 2
        overlap = np.minimum(high[:, None], edges[None, 1:]) - np.maximum(low[:, None], edges[None, :-1])
        return np.clip(overlap, 0, None) / thickness
    sigma = thickness / FWHM_PER_SIGMA
    cumulative = special.ndtr((edges[None, :] - centres[:, None]) / sigma)  # (lr, hr + 1)
    weights = np.diff(cumulative, axis=1)
    weights[:, 0] += cumulative[:, 0]             # the tail below the first HR voxel
    weights[:, -1] += 1 - cumulative[:, -1]       # and above the last
    return weights


def slice_profile(volume: np.ndarray, lr_shape: Sequence[int], profile: str, gap: float) -> np.ndarray:
    """A thick-slice acquisition of ``volume``: the slice profile along every axis the LR grid is coarser on."""
    return _along_axes(volume, lambda axis, size: None if size == lr_shape[axis]
                       else slice_profile_weights(size, lr_shape[axis], profile, gap))


def kspace_truncate(volume: np.ndarray, lr_shape: Sequence[int]) -> np.ndarray:
    """The magnitude image of the central ``lr_shape`` frequencies of ``volume``, sampled at the LR voxel centres.

    Cropping a spectrum of n frequencies to m and inverting samples the
    band-limited image at HR index t j (t = n / m): at the first voxel of
    each block, not at the block centre t j + (t - 1) / 2 where the LR grid
    puts voxel j. The spectrum is therefore first shifted by (t - 1) / 2 HR
    voxels (a phase ramp); without it every method's estimate sits half an
    HR voxel off and scores about 3 dB worse against the HR. The result is a
    magnitude image, as a scanner reconstructs one; the scale m / n keeps the
    mean intensity.
    """
    spectrum = np.asarray(volume, dtype=np.complex128)
    for axis, (hr_size, lr_size) in enumerate(zip(volume.shape, lr_shape)):
        if hr_size == lr_size:
            continue
        shift = (hr_size / lr_size - 1) / 2
        frequencies = np.fft.fftfreq(hr_size) * hr_size  # signed integer frequencies, in FFT order
        ramp = np.exp(2j * np.pi * frequencies * shift / hr_size)
        along = [1] * volume.ndim
        along[axis] = hr_size
        transformed = fft.fft(spectrum, axis=axis) * ramp.reshape(along)
        kept = np.rint(np.fft.fftfreq(lr_size) * lr_size).astype(int) % hr_size  # the central lr_size, FFT order
        spectrum = fft.ifft(np.take(transformed, kept, axis=axis), axis=axis) * (lr_size / hr_size)
    return np.abs(spectrum).astype(np.float32)


def rician_noise(lr_volume: np.ndarray, noise_std: float, rng: np.random.Generator) -> np.ndarray:
    """The magnitude of the volume plus complex Gaussian noise of ``noise_std`` per channel: what a magnitude
    image of a noisier (e.g. lower-field) acquisition looks like."""
    real = lr_volume + rng.normal(0, noise_std, lr_volume.shape)
    imaginary = rng.normal(0, noise_std, lr_volume.shape)
    return np.sqrt(real**2 + imaginary**2).astype(np.float32)
