"""Synthetic coronal proton-density knee phantom: the bundled sample slices and the training set of every bundled
network.

It imitates a fastMRI single-coil coronal PD knee slice (``CORPD_FBK``) after the paper's preprocessing (centre
crop, anti-aliased resize to 128x128, linear scaling to [0, 1]; Duff et al. 2023, Sec. 4): femoral condyles with the
intercondylar notch above, the tibial plateau (and often the fibular head) below, dark cortical rims around bright
textured fatty marrow, intermediate-bright articular cartilage, dark menisci, collateral and cruciate ligaments,
striated muscle inside a bright subcutaneous fat layer, and a dark background with a Rician noise floor.

Rendering. Every structure is a signed distance function (SDF; negative inside) in an *anatomy frame*
``(u, v)`` (``u`` left-right, ``v`` top-down, both about [-1, 1] across the image). A random pose (rotation,
scale, translation, left/right mirror) maps image pixels into that frame. Tissues are painted in order with
anti-aliased coverage ``c = clip(1/2 - d / h, 0, 1)`` (``h`` = one pixel), ``image <- image + c * (value - image)``,
on a grid ``OVERSAMPLE`` times finer than the output (reduced with Pillow's anti-aliased Lanczos filter; 1 by
default: the analytic coverage already anti-aliases, and it keeps a phantom cheap to draw). Textures are
filtered random fields (isotropic speckle for marrow, vertically stretched streaks for muscle, smooth fields for
slow intensity changes and wobbly outlines). Finally the slice is blurred (Gaussian PSF, ``BLUR_SIGMA`` pixels),
multiplied by a smooth bias field ``exp(b(x, y))`` (``b`` a random quadratic: coil sensitivity), given Rician
magnitude noise ``|x + n_re + i n_im|``, and rescaled linearly to [0, 1] (minimum -> 0, the ``WHITE_PERCENTILE``
percentile -> 1, clipped).

All randomness comes from ``np.random.default_rng(seed)``, drawn in a fixed order: the anatomy, then the coarse
smooth fields, then the per-pixel noise; so the anatomy and every outline are the same at every ``size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from ..defaults import IMAGE_SIZE
from ..validators import check_seed
from . import limits

__all__ = ["KneeAnatomy", "knee_phantom", "phantom_batch", "phantom_grid", "sample_anatomy", "to_uint8"]

#: internal rendering resolution = OVERSAMPLE * output size (reduced with an anti-aliasing filter)
OVERSAMPLE = 1
#: std (output pixels) of the Gaussian point-spread function applied before the noise (acquisition + resize blur)
BLUR_SIGMA = 0.5
#: the output is scaled so that this percentile of the slice maps to 1 (a robust maximum)
WHITE_PERCENTILE = 99.8


@dataclass(frozen=True)
class KneeAnatomy:
    """Random shape, pose and tissue parameters of one phantom.

    Lengths are in anatomy-frame units (the image spans [-1, 1]); ``u`` runs left to right with the medial side at
    ``u < 0`` and ``v`` top to bottom. Pairs are ``(medial, lateral)`` unless stated; ``mirror`` swaps the sides in
    the image (a right versus a left knee).
    """

    # pose: image point = shift + scale * R(angle) (u, v), u mirrored when ``mirror``
    angle: float
    scale: float
    shift: tuple[float, float]
    mirror: bool
    # joint: the level of the joint line, cartilage thicknesses and the fluid gap between the cartilage layers
    joint_level: float
    cartilage_femur: float
    cartilage_tibia: float
    joint_gap: float
    # femur: shaft half-width at the top, flare length, condyles (centre offsets from the axis, radii (ru, rv),
    # extra drop of each condyle), intercondylar notch
    femur_centre: float
    femur_shaft_halfwidth: float
    femur_flare: float
    condyle_offset: tuple[float, float]
    condyle_radii: tuple[tuple[float, float], tuple[float, float]]
    condyle_drop: tuple[float, float]
    notch_halfwidth: float
    notch_height: float
    # tibia: plateau half-width, shaft half-width, flare length, plateau dips, spine heights, fibular head
    # (drop below the plateau, ru, rv, overlap with the tibia) or None when the slice misses it
    tibia_centre: float
    plateau_halfwidth: float
    tibia_shaft_halfwidth: float
    tibia_flare: float
    plateau_dip: tuple[float, float]
    spine_height: tuple[float, float]
    fibula: tuple[float, float, float, float] | None
    # cortex (near the joint, extra in the shafts), physeal scars (distance from the joint, waviness),
    # menisci (height at the rim, inner apex offset), ligaments (width; lateral collateral and iliotibial band shown)
    cortex: float
    cortex_shaft: float
    physis: tuple[float, float]
    physis_wave: tuple[float, float]
    meniscus_height: tuple[float, float]
    meniscus_inner: tuple[float, float]
    ligament_width: float
    show_lcl: bool
    show_itb: bool
    # soft tissue: leg outline (centre, half-widths at the joint, widening towards the top / bottom edge),
    # subcutaneous fat thickness, a fibrous septum in the fat (depth as a fraction of the fat, opacity), muscle
    # ends per quadrant (distance from the joint line, slope, curvature) in the order
    # (upper medial, upper lateral, lower medial, lower lateral), fat plane between muscle and bone,
    # intermuscular septa (u positions), small flow voids in the fat (u, v, radius)
    body_centre: float
    body_halfwidth: tuple[float, float]
    body_widening: tuple[float, float]
    fat_thickness: tuple[float, float]
    fat_strands: tuple[float, float]
    muscle_end: tuple[tuple[float, float, float], ...]
    muscle_fat_plane: float
    septa: tuple[float, ...]
    vessels: tuple[tuple[float, float, float], ...]
    # tissue values before bias and noise (fat ~ 1)
    fat: float
    marrow: float
    muscle: float
    cartilage: float
    fluid: float
    dark: float
    ligament: float
    notch_fat: float
    # textures (relative amplitudes), bias-field coefficients (x, y, x^2, y^2, xy) and the noise std
    marrow_texture: float
    marrow_patches: float
    muscle_texture: float
    bias: tuple[float, float, float, float, float]
    noise: float


def sample_anatomy(rng: np.random.Generator) -> KneeAnatomy:
    """Draw one :class:`KneeAnatomy` from ``rng``; always the same number of draws, so the textures drawn after it
    do not depend on which optional structures were chosen."""
    uniform = rng.uniform
    offset = (uniform(0.24, 0.3), uniform(0.23, 0.29))
    radii = ((uniform(0.21, 0.27), uniform(0.18, 0.24)), (uniform(0.2, 0.26), uniform(0.17, 0.23)))
    outer = 0.5 * (offset[0] + radii[0][0] + offset[1] + radii[1][0])
    fibula = (uniform(0.1, 0.24), uniform(0.07, 0.1), uniform(0.1, 0.15), uniform(0.05, 0.1))
    show_fibula, show_lcl, show_itb = uniform(size=3) < (0.7, 0.7, 0.6)
    n_vessels = int(rng.integers(0, 5))
    vessel_draws = uniform(size=(4, 3))
    vessels = tuple((2 * du - 1, 2 * dv - 1, 0.012 + 0.014 * dr) for du, dv, dr in vessel_draws[:n_vessels])
    return KneeAnatomy(
        angle=uniform(-7, 7),
        scale=uniform(0.9, 1.07),
        shift=(uniform(-0.05, 0.05), uniform(-0.07, 0.07)),
        mirror=bool(uniform() < 0.5),
        joint_level=uniform(-0.06, 0.1),
        cartilage_femur=uniform(0.022, 0.036),
        cartilage_tibia=uniform(0.02, 0.032),
        joint_gap=uniform(0.0, 0.012),
        femur_centre=uniform(-0.03, 0.03),
        femur_shaft_halfwidth=uniform(0.24, 0.31),
        femur_flare=uniform(0.4, 0.75),
        condyle_offset=offset,
        condyle_radii=radii,
        condyle_drop=(uniform(0.0, 0.015), uniform(-0.015, 0.005)),
        notch_halfwidth=uniform(0.11, 0.15),
        notch_height=uniform(0.17, 0.3),
        tibia_centre=uniform(-0.03, 0.03),
        plateau_halfwidth=outer + uniform(-0.01, 0.05),
        tibia_shaft_halfwidth=uniform(0.2, 0.27),
        tibia_flare=uniform(0.4, 0.75),
        plateau_dip=(uniform(0.0, 0.025), uniform(-0.015, 0.01)),
        spine_height=(uniform(0.04, 0.09), uniform(0.03, 0.08)),
        fibula=fibula if show_fibula else None,
        cortex=uniform(0.011, 0.017),
        cortex_shaft=uniform(0.02, 0.045),
        physis=(uniform(0.3, 0.45), uniform(0.2, 0.3)),
        physis_wave=(uniform(0.005, 0.02), uniform(0.005, 0.02)),
        meniscus_height=(uniform(0.06, 0.1), uniform(0.05, 0.09)),
        meniscus_inner=(uniform(-0.03, 0.04), uniform(-0.03, 0.04)),
        ligament_width=uniform(0.01, 0.018),
        show_lcl=bool(show_lcl),
        show_itb=bool(show_itb),
        body_centre=uniform(-0.05, 0.05),
        body_halfwidth=(uniform(0.8, 1.0), uniform(0.8, 1.0)),
        body_widening=(uniform(0.0, 0.12), uniform(-0.08, 0.06)),
        fat_thickness=(uniform(0.05, 0.14), uniform(0.04, 0.12)),
        fat_strands=(uniform(0.3, 0.7), uniform(0.2, 0.6)),
        muscle_end=tuple((uniform(0.06, 0.38), uniform(-0.5, 0.6), uniform(-0.8, 1.2)) for _ in range(4)),
        muscle_fat_plane=uniform(-0.01, 0.012),
        septa=tuple(float(s) for s in uniform(0.32, 0.72, 4) * np.array([-1, -1, 1, 1])),
        vessels=vessels,
        fat=uniform(0.85, 1.0),
        marrow=uniform(0.74, 0.94),
        muscle=uniform(0.24, 0.38),
        cartilage=uniform(0.48, 0.64),
        fluid=uniform(0.25, 0.5),
        dark=uniform(0.03, 0.09),
        ligament=uniform(0.05, 0.14),
        notch_fat=uniform(0.3, 0.55),
        marrow_texture=uniform(0.04, 0.09),
        marrow_patches=uniform(0.0, 0.12),
        muscle_texture=uniform(0.04, 0.09),
        bias=tuple(rng.normal([0.0, 0.0, 0.08, 0.0, 0.0], [0.18, 0.15, 0.1, 0.1, 0.08])),
        noise=uniform(0.012, 0.035),
    )


# ----------------------------------------------------------------------------------------------------------------
# signed-distance helpers (negative inside)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (union of two SDFs with a fillet of size ``k``)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth maximum (intersection of two SDFs, rounded corners of size ``k``)."""
    return -_smin(-a, -b, k)


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, ru: float, rv: float) -> np.ndarray:
    """Approximate SDF of an axis-aligned ellipse: ``k0 (k0 - 1) / k1``, ``k0 = |p / r|``, ``k1 = |p / r^2|``."""
    pu, pv = (u - cu) / ru, (v - cv) / rv
    k0 = np.sqrt(pu * pu + pv * pv)
    k1 = np.sqrt((pu / ru) ** 2 + (pv / rv) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def _segment(u: np.ndarray, v: np.ndarray, a: tuple[float, float], b: tuple[float, float], radius: float) -> np.ndarray:
    """SDF of a capsule: distance to the segment ``a``-``b`` minus ``radius``."""
    du, dv = b[0] - a[0], b[1] - a[1]
    t = np.clip(((u - a[0]) * du + (v - a[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.hypot(u - a[0] - t * du, v - a[1] - t * dv) - radius


def _normalise(sdf: np.ndarray, pixel: float) -> np.ndarray:
    """Turn an implicit function into an approximate distance: ``f / |grad f|`` (gradient by finite differences)."""
    gv, gu = np.gradient(sdf, pixel)
    return sdf / np.maximum(np.sqrt(gu * gu + gv * gv), 0.25)


class _Canvas:
    """An image painted tissue by tissue with anti-aliased coverage."""

    def __init__(self, shape: tuple[int, int], pixel: float):
        self.image = np.zeros(shape, np.float32)
        self.pixel = pixel

    def coverage(self, sdf: np.ndarray) -> np.ndarray:
        """Fraction of each pixel inside ``sdf < 0`` (a linear ramp one pixel wide)."""
        return np.clip(0.5 - sdf / self.pixel, 0.0, 1.0)

    def paint(self, coverage: np.ndarray, value) -> None:
        self.image += coverage * (value - self.image)


def _unit(field: np.ndarray) -> np.ndarray:
    """``field`` scaled to unit standard deviation (in place)."""
    field /= max(float(field.std()), 1e-6)
    return field


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], coarse: int) -> np.ndarray:
    """A smooth random field with unit std: ``coarse x coarse`` white noise, blurred, bicubic-upsampled to ``shape``."""
    small = _unit(ndimage.gaussian_filter(rng.standard_normal((coarse, coarse), dtype=np.float32), 1.0, mode="wrap"))
    return np.asarray(Image.fromarray(small).resize(shape[::-1], Image.Resampling.BICUBIC))


# ----------------------------------------------------------------------------------------------------------------
# anatomy as signed distance functions


def _femur(a: KneeAnatomy, u, v, pixel):
    """Femur: a shaft flaring into the two condyle ellipses (smooth union), minus the intercondylar notch.

    Returns ``(sdf, condyle_bottoms, condyle_centre_levels, notch_sdf, notch_roof)``."""
    cf = a.femur_centre
    bottoms, levels, condyles, halves = [], [], [], []
    for side, sign in ((0, -1.0), (1, 1.0)):
        ru, rv = a.condyle_radii[side]
        bottom = a.joint_level - a.joint_gap / 2 - a.cartilage_femur + a.condyle_drop[side]
        bottoms.append(bottom)
        levels.append(bottom - rv)
        condyles.append(_ellipse(u, v, cf + sign * a.condyle_offset[side], bottom - rv, ru, rv))
    top = min(levels)
    flare = _smoothstep(top - a.femur_flare, top + 0.02, v)
    for side in (0, 1):
        widest = a.condyle_offset[side] + a.condyle_radii[side][0] - 0.02
        halves.append(a.femur_shaft_halfwidth + (widest - a.femur_shaft_halfwidth) * flare)
    body = np.maximum(np.maximum(cf - halves[0] - u, u - cf - halves[1]), v - top - 0.04)
    sdf = _smin(_smin(_normalise(body, pixel), condyles[0], 0.06), condyles[1], 0.06)
    notch_base = max(bottoms) + 0.05
    notch = _ellipse(u, v, cf, notch_base, a.notch_halfwidth, a.notch_height + 0.05)
    return _smax(sdf, -notch, 0.025), bottoms, levels, notch, notch_base - a.notch_height - 0.05


def _plateau(a: KneeAnatomy, femur_bottoms, u):
    """Level ``v = p(u)`` of the tibial plateau bone surface: one cartilage-gap-cartilage below each condyle, with
    a shallow dip per compartment and the two tibial spines rising into the notch."""
    ct = a.tibia_centre
    heights = [b + a.cartilage_femur + a.joint_gap + a.cartilage_tibia for b in femur_bottoms]
    level = heights[0] + (heights[1] - heights[0]) * _smoothstep(-0.12, 0.12, u - ct)
    for side, sign in ((0, -1.0), (1, 1.0)):
        level = level + a.plateau_dip[side] * np.exp(-(((u - ct - sign * a.condyle_offset[side]) / 0.14) ** 2))
        level = level - a.spine_height[side] * np.exp(-(((u - ct - sign * 0.035) / 0.028) ** 2))
    return level, float(np.mean(heights))


def _tibia(a: KneeAnatomy, u, v, plateau, plateau_level, pixel):
    """Tibia: below the plateau surface, between sides narrowing from the plateau to the shaft (rounded rims)."""
    narrowing = _smoothstep(plateau_level + 0.05, plateau_level + 0.05 + a.tibia_flare, v)
    half = a.plateau_halfwidth + (a.tibia_shaft_halfwidth - a.plateau_halfwidth) * narrowing
    sides = np.abs(u - a.tibia_centre) - half
    return _smax(_normalise(plateau - v, pixel), _normalise(sides, pixel), 0.05)


def _fibula(a: KneeAnatomy, u, v, plateau_level):
    """Fibular head (an ellipse tucked under the lateral tibial rim) joined smoothly to a narrower shaft."""
    assert a.fibula is not None  # drawn only when the anatomy has one
    drop, ru, rv, overlap = a.fibula
    cu, cv = a.tibia_centre + a.plateau_halfwidth - 0.06 - overlap + ru, plateau_level + drop + rv
    shaft = _segment(u, v, (cu, cv), (cu + 0.1, cv + 1.5), 0.7 * ru)
    return _smin(_ellipse(u, v, cu, cv, ru, rv), shaft, 0.1)


def _skin(a: KneeAnatomy, u, v, wobble):
    """Leg outline: vertical sides at the joint, widening quadratically towards the top / bottom edge."""
    widen = np.where(v < a.joint_level, a.body_widening[0], a.body_widening[1]) * (v - a.joint_level) ** 2
    left = a.body_centre - a.body_halfwidth[0] - widen + 0.03 * wobble
    right = a.body_centre + a.body_halfwidth[1] + widen + 0.03 * wobble
    return np.maximum(left - u, u - right)


def _muscle_zone(a: KneeAnatomy, u, v, wobble):
    """Negative where muscle may lie: above / below the joint, up to a curved end per quadrant (``muscle_end``):
    distance from the joint line ``g + s * w + c * w^2``, ``w`` = distance from the bone edge (roughly)."""
    medial = u < a.tibia_centre
    away = np.abs(u - a.tibia_centre) - 0.3
    ends = [g + s * away + c * away * away for g, s, c in a.muscle_end]
    upper_end = a.joint_level - np.where(medial, ends[0], ends[1])
    lower_end = a.joint_level + np.where(medial, ends[2], ends[3])
    return np.minimum(v - upper_end, lower_end - v) + wobble


def _frame(a: KneeAnatomy, n: int):
    """Anatomy-frame coordinates ``(u, v)`` of the pixel centres of an ``n x n`` image, and one pixel's size."""
    axis = ((np.arange(n, dtype=np.float32) + 0.5) / n) * 2.0 - 1.0
    x, y = np.meshgrid(axis - a.shift[0], axis - a.shift[1])
    c, s = np.float32(np.cos(np.radians(a.angle))), np.float32(np.sin(np.radians(a.angle)))
    u = (c * x + s * y) / np.float32(a.scale)
    v = (c * y - s * x) / np.float32(a.scale)
    return (-u if a.mirror else u), v, 2.0 / n / a.scale


# ----------------------------------------------------------------------------------------------------------------
# rendering


def _render(a: KneeAnatomy, rng: np.random.Generator, n: int) -> np.ndarray:
    """Paint the anatomy on an ``n x n`` grid: noise-free tissue values before the bias field, float32."""
    u, v, pixel = _frame(a, n)
    canvas = _Canvas((n, n), pixel)
    ct = a.tibia_centre

    # smooth fields (drawn first: their size does not depend on n, so shapes are the same at every size), then one
    # white noise filtered differently per tissue
    low, mid = _smooth_field(rng, (n, n), 6), _smooth_field(rng, (n, n), 16)
    white = rng.standard_normal((n, n), dtype=np.float32)
    fine = _unit(ndimage.gaussian_filter(white, 0.7 * n / 128, mode="wrap"))
    streaks = _unit(ndimage.gaussian_filter(white, (4.0 * n / 128, 0.6 * n / 128), mode="wrap"))

    femur, bottoms, condyle_levels, notch, notch_roof = _femur(a, u, v, pixel)
    plateau, plateau_level = _plateau(a, bottoms, u)
    tibia = _tibia(a, u, v, plateau, plateau_level, pixel)
    bones = [femur, tibia] + ([_fibula(a, u, v, plateau_level)] if a.fibula is not None else [])
    bone = np.minimum.reduce(bones)

    # subcutaneous fat inside the skin, then muscle inside the fascia (kept off the bone by a thin fat plane)
    skin = _skin(a, u, v, low)
    canvas.paint(canvas.coverage(skin), a.fat * (1.0 + 0.03 * fine + 0.04 * mid))
    depth = a.fat_strands[0] * np.where(u < a.body_centre, a.fat_thickness[0], a.fat_thickness[1])
    strand = np.abs(skin + depth + 0.02 * mid) - 0.004  # a thin fibrous septum in the fat, along the skin
    canvas.paint(canvas.coverage(strand) * a.fat_strands[1], a.muscle)
    fat_in = np.where(u < a.body_centre, a.fat_thickness[0], a.fat_thickness[1]) * (1.0 + 0.3 * mid)
    fascia = skin + fat_in
    muscle = _smax(_smax(fascia, _muscle_zone(a, u, v, 0.06 * low + 0.03 * mid), 0.2), a.muscle_fat_plane - bone, 0.02)
    canvas.paint(canvas.coverage(muscle),
                 a.muscle * (1.0 + a.muscle_texture * streaks + 0.06 * mid + 0.1 * np.tanh(2.0 * low)))
    for i, position in enumerate(a.septa):  # bright intermuscular septa: wavy lines, roughly along the leg
        septum = np.abs(u - ct - position - 0.05 * (low if i % 2 else mid)) - 0.005
        canvas.paint(canvas.coverage(np.maximum(septum, muscle + 0.01)) * 0.8, a.fat)

    # ligaments outside the joint: medial collateral, lateral collateral (to the fibular head), iliotibial band
    rim = a.plateau_halfwidth
    outer_m = a.condyle_offset[0] + a.condyle_radii[0][0]
    outer_l = a.condyle_offset[1] + a.condyle_radii[1][0]
    ligaments = [
        _segment(u, v, (ct - outer_m + 0.01, a.joint_level - 0.24), (ct - rim - 0.04, a.joint_level), a.ligament_width),
        _segment(u, v, (ct - rim - 0.04, a.joint_level), (ct - rim + 0.01, a.joint_level + 0.42), a.ligament_width),
    ]
    if a.show_lcl:
        end = (ct + rim + 0.05, plateau_level + (a.fibula[0] + 0.03 if a.fibula is not None else 0.12))
        ligaments.append(_segment(u, v, (ct + outer_l - 0.005, a.joint_level - 0.2), end, 0.8 * a.ligament_width))
    if a.show_itb:  # runs down lateral to the condyle, then bends in to its tibial insertion
        bend = (ct + outer_l + 0.08, a.joint_level - 0.04)
        ligaments.append(_segment(u, v, (bend[0] + 0.02, a.joint_level - 0.45), bend, 0.9 * a.ligament_width))
        ligaments.append(_segment(u, v, bend, (ct + rim - 0.02, plateau_level + 0.1), 0.9 * a.ligament_width))
    canvas.paint(canvas.coverage(np.minimum.reduce(ligaments)), a.ligament)

    # joint fluid between the articular surfaces, notch fat and the cruciate ligaments
    joint = np.maximum.reduce([-femur, -tibia,
                               femur + tibia - a.cartilage_femur - a.cartilage_tibia - a.joint_gap - 0.02,
                               np.abs(u - ct) - rim])
    canvas.paint(canvas.coverage(joint), a.fluid)
    notch_inside = np.maximum(notch, notch_roof - v)
    canvas.paint(canvas.coverage(notch_inside), a.notch_fat * (1.0 + 0.1 * mid))
    pcl = _segment(u, v, (ct - 0.045, notch_roof + 0.05), (ct - 0.06, plateau_level - 0.02), 0.04)
    acl = _segment(u, v, (ct + 0.06, notch_roof + 0.07), (ct + 0.01, plateau_level - 0.03), 0.03)
    canvas.paint(canvas.coverage(np.maximum(pcl, notch)), a.ligament)
    canvas.paint(canvas.coverage(np.maximum(acl, notch)), a.ligament + 0.15 + 0.06 * streaks)

    # bones: dark cortex, then textured marrow inside it (thicker cortex towards the shafts)
    from_joint = np.abs(v - a.joint_level)
    cortex = a.cortex + a.cortex_shaft * _smoothstep(0.35, 1.0, from_joint)
    patches = a.marrow_patches * np.clip(0.6 * low + 0.6 * mid, 0.0, None) * _smoothstep(0.1, 0.45, from_joint)
    marrow = a.marrow * (1.0 + a.marrow_texture * fine + 0.05 * mid - patches)
    for sdf in bones:
        canvas.paint(canvas.coverage(sdf), a.dark)
        canvas.paint(canvas.coverage(sdf + cortex), marrow)
    for level, wave, sdf in ((a.joint_level - a.physis[0], a.physis_wave[0], femur),
                             (plateau_level + a.physis[1], a.physis_wave[1], tibia)):  # physeal scars
        line = np.abs(v - level - wave * np.sin(9.0 * u + 5.0 * level) - 0.015 * mid) - 0.005
        canvas.paint(canvas.coverage(np.maximum(line, sdf + cortex)) * 0.6, a.dark)

    # articular cartilage: bands on the condyles (not in the notch) and on the plateau (not on the spines)
    off_notch = _smoothstep(a.notch_halfwidth - 0.01, a.notch_halfwidth + 0.03, np.abs(u - a.femur_centre))
    low_femur = _smoothstep(min(condyle_levels) - 0.08, max(condyle_levels) + 0.02, v)
    canvas.paint(canvas.coverage(np.maximum(-femur, femur - a.cartilage_femur)) * off_notch * low_femur,
                 a.cartilage * (1.0 + 0.05 * fine))
    across = np.abs(u - ct)
    on_plateau = (_smoothstep(0.06, 0.1, across) * (1.0 - _smoothstep(rim - 0.06, rim, across))
                  * (v < plateau_level + 0.1))
    canvas.paint(canvas.coverage(np.maximum(-tibia, tibia - a.cartilage_tibia)) * on_plateau,
                 a.cartilage * (1.0 + 0.05 * fine))

    # menisci: dark wedges at the joint margins, growing outwards, between the cartilage layers
    for side, sign in ((0, -1.0), (1, 1.0)):
        q = sign * (u - ct)
        inner, outer = a.condyle_offset[side] + a.meniscus_inner[side], rim + 0.01
        height = a.meniscus_height[side] * np.clip((q - inner) / (outer - inner), 0.0, 1.0)
        wedge = np.maximum.reduce([inner - q, q - outer, v - plateau + 0.5 * a.cartilage_tibia, plateau - height - v,
                                   0.8 * a.cartilage_femur - femur])
        canvas.paint(canvas.coverage(wedge), a.dark)

    # flow voids in the subcutaneous fat and the skin line
    for vu, vv, r in a.vessels:
        canvas.paint(canvas.coverage(np.maximum(_ellipse(u, v, vu, vv, r, 1.3 * r), -fascia)), a.dark)
    canvas.paint(canvas.coverage(np.maximum(skin, -skin - 0.008)), 0.5 * a.fat)
    return canvas.image


def _finish(a: KneeAnatomy, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Blur, bias field, Rician magnitude noise and the linear rescale to [0, 1]."""
    n = image.shape[0]
    image = ndimage.gaussian_filter(image, BLUR_SIGMA, mode="nearest")
    axis = ((np.arange(n, dtype=np.float32) + 0.5) / n) * 2.0 - 1.0
    x, y = np.meshgrid(axis, axis)
    b = a.bias
    image = image * np.exp(b[0] * x + b[1] * y + b[2] * x * x + b[3] * y * y + b[4] * x * y)
    noise = rng.standard_normal((2, n, n), dtype=np.float32) * a.noise
    image = np.hypot(image + noise[0], noise[1])
    lo, hi = float(image.min()), float(np.percentile(image, WHITE_PERCENTILE))
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 16 <= int(size) <= 2048:
        raise ValueError(f"phantom size must be an integer between 16 and 2048, got {size!r}")
    return int(size)


def _check_seed(seed) -> int:
    return check_seed(seed, "phantom seed")


def knee_phantom(seed: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """One synthetic coronal PD knee slice: float32 ``(size, size)`` in [0, 1] (min 0, max 1), deterministic in
    ``seed``; the anatomy depends on ``seed`` only, textures and noise also on ``size``."""
    seed, size = _check_seed(seed), _check_size(size)
    rng = np.random.default_rng(seed)
    anatomy = sample_anatomy(rng)
    image = _render(anatomy, rng, size * OVERSAMPLE)
    if OVERSAMPLE > 1:
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
    return _finish(anatomy, rng, np.maximum(image, 0.0))


def phantom_batch(count: int, seed: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """``count`` phantoms stacked as float32 ``(count, size, size)``; item ``i`` is ``knee_phantom(seed + i, size)``."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or int(count) < 0:
        raise ValueError(f"phantom count must be a non-negative integer, got {count!r}")
    seed, size = _check_seed(seed), _check_size(size)
    limits.check_images(int(count), (size, size), f"{int(count)} phantoms")
    out = np.empty((int(count), size, size), np.float32)
    for i in range(int(count)):
        out[i] = knee_phantom(seed + i, size)
    return out


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float image -> uint8 grey levels (values outside [0, 1] are clipped)."""
    return (np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def phantom_grid(images: np.ndarray, columns: int = 4, gap: int = 2) -> np.ndarray:
    """Tile ``(N, H, W)`` images into one ``float32`` mosaic, ``columns`` wide, separated by ``gap`` black pixels."""
    images = np.asarray(images, np.float32)
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(f"phantom_grid needs a non-empty (N, H, W) stack, got shape {images.shape}")
    if columns < 1 or gap < 0:
        raise ValueError("phantom_grid needs columns >= 1 and gap >= 0")
    count, h, w = images.shape
    columns = min(columns, count)
    rows = -(-count // columns)
    grid = np.zeros((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = image
    return grid
