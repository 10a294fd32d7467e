"""Realism-gap metrics, one module per family; `from facerealism import metrics; metrics.X` reaches them all.

frechet: Fréchet distance, bootstrap CIs, Table 4 rows, FD_diff · spaces: offline feature spaces and detail
energies · c2st: classifier two-sample test · fidelity: torch-fidelity FID/KID · paired: SSIM, LPIPS ·
identity: dlib identity similarity · damage: edge overshoot and halos beside edges, clipped highlights, grain on flat
regions · placement: whether detail moves to where each input's dev twin has it.
Beside them, imported by name: dlib_faces (dlib detection, descriptors, attribute analysers), fd_dinov2_cmmd
(FD-DINOv2 and CMMD) and pretrained (where every metric's pretrained weights come from).
"""

from facerealism.metrics.c2st import C2ST_SPACES, c2st, c2st_images, wilson_interval
from facerealism.metrics.checks import check_images, check_pairs
from facerealism.metrics.damage import clipped_gain, edge_halo, edge_overshoot, flat_grain, halo_histogram, halo_quantile
from facerealism.metrics.placement import (
    detail_layout,
    layout_agreement,
    placement_gain,
    placement_pairs,
    placement_summary,
)
from facerealism.metrics.fidelity import (
    INCEPTION_WEIGHTS_FILE,
    NO_OFFLINE_WEIGHTS,
    inception_metrics,
    inception_weights_problem,
)
from facerealism.metrics.frechet import bootstrap_ci, fd_diff, fd_row, frechet_distance
from facerealism.metrics.identity import face_descriptors, identity_pairs, identity_similarity, identity_summary
from facerealism.metrics.paired import load_lpips, lpips_pairs, lpips_per_pair, ssim_pairs
from facerealism.metrics.spaces import (
    FEATURE_SPACES,
    colour_noise_gain,
    high_frequency_energy,
    radial_log_power,
    random_conv_features,
    spectral_chroma_features,
    spectral_features,
)

__all__ = [
    "C2ST_SPACES", "FEATURE_SPACES", "INCEPTION_WEIGHTS_FILE", "NO_OFFLINE_WEIGHTS", "bootstrap_ci", "c2st",
    "c2st_images", "check_images", "clipped_gain", "detail_layout", "edge_halo", "edge_overshoot", "halo_histogram", "halo_quantile", "layout_agreement",
    "placement_gain", "placement_pairs", "placement_summary", "flat_grain", "check_pairs", "colour_noise_gain", "face_descriptors", "fd_diff", "fd_row",
    "frechet_distance", "high_frequency_energy", "identity_pairs", "identity_similarity", "identity_summary",
    "inception_metrics",
    "inception_weights_problem", "load_lpips", "lpips_pairs", "lpips_per_pair", "radial_log_power", "random_conv_features",
    "spectral_chroma_features", "spectral_features", "ssim_pairs", "wilson_interval",
]
