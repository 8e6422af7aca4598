"""Pure numpy/scipy analysis: MSD, diffusivities with error bars, Arrhenius fits and plots.

Nothing in this sub-package imports AiiDA, so it can be used and tested on plain arrays.
"""

from .arrhenius import K_B_EV_K, ArrheniusFitError, ArrheniusResult, arrhenius_extrapolate, fit_arrhenius
from .diffusion import A2_PS_TO_CM2_S, DiffusivityResult, estimate_diffusivity
from .gls import estimate_diffusivity_gls
from .msd import msd_fft, msd_fft_per_particle, remove_drift, summed_displacement, unwrap
from .plotting import plot_arrhenius, plot_msd

__all__ = [
    "A2_PS_TO_CM2_S",
    "K_B_EV_K",
    "ArrheniusFitError",
    "ArrheniusResult",
    "DiffusivityResult",
    "arrhenius_extrapolate",
    "estimate_diffusivity",
    "estimate_diffusivity_gls",
    "fit_arrhenius",
    "msd_fft",
    "msd_fft_per_particle",
    "plot_arrhenius",
    "plot_msd",
    "remove_drift",
    "summed_displacement",
    "unwrap",
]
