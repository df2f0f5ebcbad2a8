"""Procedural CT-like phantom: a thin-slice ground truth for demos, tests and benchmarks.

:func:`make_phantom` draws a chest/upper-abdomen section in HU on an isotropic grid: air outside an
elliptical body with skin, a subcutaneous fat layer and a muscle wall; two lungs with a domed diaphragm,
branching oblique vessels (1-3 mm), airways with thin walls and a few small nodules; heart, aorta, liver,
spleen and kidneys with slightly different HU; a segmented spine (cortical shell, cancellous core,
intervertebral discs, posterior arches) and oblique ribs; mild in-plane correlated noise.

Much of it changes along z on a 1-2 mm scale (oblique vessels and ribs, nodules, discs, endplates,
bifurcations, the diaphragm dome), which is exactly what thick slices lose. Everything is vectorised with
NumPy (no SciPy needed) and deterministic for a given ``seed``.

:func:`make_demo_case` pairs the phantom with its thick-slice acquisition simulated by the exact model of
``docs/method.md`` (see :func:`sr4zct.demo.evaluation.simulate_acquisition`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sr4zct.errors import ParameterError
from sr4zct.volume import Volume, make_geometry

__all__ = ["make_demo_case", "make_phantom"]

# HU of the tissues drawn (non-contrast values).
HU = {
    "air": -1000.0,
    "skin": 40.0,
    "fat": -100.0,
    "muscle": 52.0,
    "viscera": 30.0,
    "lung": -850.0,
    "vessel": 40.0,
    "airway_wall": 20.0,
    "airway_lumen": -950.0,
    "nodule": 35.0,
    "ground_glass": -450.0,
    "heart": 42.0,
    "blood": 48.0,
    "liver": 62.0,
    "liver_vessel": 38.0,
    "spleen": 50.0,
    "kidney": 33.0,
    "sinus_fat": -90.0,
    "cortical_bone": 1000.0,
    "cancellous_bone": 380.0,
    "rib_cortex": 850.0,
    "marrow": 400.0,
    "disc": 90.0,
    "cord": 32.0,
    "bowel_gas": -990.0,
}


@dataclass
class _Canvas:
    """The volume being painted and its voxel-centre coordinates (mm, centred in-plane)."""

    vol: np.ndarray
    voxel_mm: float
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, int, int], voxel_mm: float) -> _Canvas:
        n0, n1, n2 = shape
        z = (np.arange(n0, dtype=np.float32)) * voxel_mm
        y = (np.arange(n1, dtype=np.float32) - (n1 - 1) / 2) * voxel_mm
        x = (np.arange(n2, dtype=np.float32) - (n2 - 1) / 2) * voxel_mm
        return cls(np.full(shape, HU["air"], np.float32), float(voxel_mm), z, y, x)

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index box holding the (z, y, x) millimetre box [lo, hi], or None when it misses the grid."""
        out = []
        for coords, a, b in zip((self.z, self.y, self.x), lo, hi, strict=True):
            start = max(0, int(math.floor((a - coords[0]) / self.voxel_mm)))
            stop = min(len(coords), int(math.ceil((b - coords[0]) / self.voxel_mm)) + 1)
            if stop <= start:
                return None
            out.append(slice(start, stop))
        return tuple(out)

    def grid(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.z[box[0], None, None], self.y[None, box[1], None], self.x[None, None, box[2]]

    def paint(self, box, occupancy: np.ndarray, hu, mask: np.ndarray | None = None) -> None:
        """Blend ``hu`` into the box with the given partial-volume occupancy (0..1)."""
        if mask is not None:
            occupancy = occupancy * mask[box]
        sub = self.vol[box]
        sub += occupancy * (np.float32(hu) - sub)


def _occupancy(signed_distance_mm: np.ndarray, edge_mm: float) -> np.ndarray:
    """Partial-volume occupancy of a shape from its signed distance (negative inside)."""
    return np.clip(np.float32(0.5) - signed_distance_mm / np.float32(edge_mm), 0.0, 1.0).astype(np.float32)


def _ellipsoid_distance(dz, dy, dx, az, ay, ax) -> np.ndarray:
    """First-order signed distance (mm) to an axis-aligned ellipsoid surface."""
    qz, qy, qx = dz / az, dy / ay, dx / ax
    q = np.sqrt(qz * qz + qy * qy + qx * qx)
    grad = np.sqrt((qz / az) ** 2 + (qy / ay) ** 2 + (qx / ax) ** 2) / np.maximum(q, 1e-6)
    return (q - 1.0) / np.maximum(grad, 1e-6)


def _paint_ellipsoid(canvas: _Canvas, centre, semi_axes, hu, *, angle_deg: float = 0.0, mask=None) -> None:
    """Ellipsoid with centre (z, y, x) mm, semi-axes (z, y, x) mm, optionally rotated in-plane."""
    centre = np.asarray(centre, np.float32)
    semi = np.asarray(semi_axes, np.float32)
    reach = np.array([semi[0], semi[1:].max(), semi[1:].max()]) + 2 * canvas.voxel_mm
    box = canvas.box(centre - reach, centre + reach)
    if box is None:
        return
    z, y, x = canvas.grid(box)
    dz, dy, dx = z - centre[0], y - centre[1], x - centre[2]
    if angle_deg:
        c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
        dy, dx = c * dy - s * dx, s * dy + c * dx
    dist = _ellipsoid_distance(dz, dy, dx, semi[0], semi[1], semi[2])
    canvas.paint(box, _occupancy(dist, canvas.voxel_mm), hu, mask)


def _paint_capsule(canvas: _Canvas, p0, p1, radius_mm: float, hu, *, mask=None) -> None:
    """Cylinder with round ends from p0 to p1 (z, y, x in mm)."""
    p0 = np.asarray(p0, np.float32)
    p1 = np.asarray(p1, np.float32)
    pad = radius_mm + 2 * canvas.voxel_mm
    box = canvas.box(np.minimum(p0, p1) - pad, np.maximum(p0, p1) + pad)
    if box is None:
        return
    z, y, x = canvas.grid(box)
    v = p1 - p0
    vv = max(float(v @ v), 1e-12)
    t = np.clip(((z - p0[0]) * v[0] + (y - p0[1]) * v[1] + (x - p0[2]) * v[2]) / vv, 0.0, 1.0)
    dz = z - p0[0] - t * v[0]
    dy = y - p0[1] - t * v[1]
    dx = x - p0[2] - t * v[2]
    dist = np.sqrt(dz * dz + dy * dy + dx * dx) - radius_mm
    canvas.paint(box, _occupancy(dist, canvas.voxel_mm), hu, mask)


def _paint_column(canvas: _Canvas, centre_yx, semi_yx, z_range, hu, *, mask=None) -> None:
    """Elliptic cylinder along z between z_range (mm), with soft ends."""
    cy, cx = centre_yx
    ay, ax = semi_yx
    z0, z1 = z_range
    lo = np.array([z0 - canvas.voxel_mm, cy - ay - canvas.voxel_mm, cx - ax - canvas.voxel_mm])
    hi = np.array([z1 + canvas.voxel_mm, cy + ay + canvas.voxel_mm, cx + ax + canvas.voxel_mm])
    box = canvas.box(lo, hi)
    if box is None:
        return
    z, y, x = canvas.grid(box)
    zero = np.zeros((1, 1, 1), np.float32)
    d_plane = _ellipsoid_distance(zero, y - cy, x - cx, 1.0, ay, ax)
    d_z = np.abs(z - (z0 + z1) / 2) - (z1 - z0) / 2
    canvas.paint(box, _occupancy(np.maximum(d_plane, d_z), canvas.voxel_mm), hu, mask)


def _rotate(vector: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of ``vector`` about the unit ``axis``."""
    c, s = math.cos(angle), math.sin(angle)
    return vector * c + np.cross(axis, vector) * s + axis * float(axis @ vector) * (1 - c)


def _branch_tree(
    rng: np.random.Generator,
    start: np.ndarray,
    direction: np.ndarray,
    *,
    length_mm: float,
    radius_mm: float,
    depth: int,
    length_ratio: float = 0.8,
    radius_ratio: float = 0.78,
    spread_deg: tuple[float, float] = (22.0, 40.0),
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Segments (p0, p1, radius) of a randomly bifurcating tree, breadth first."""
    segments = []
    stack = [(np.asarray(start, float), np.asarray(direction, float), length_mm, radius_mm, 0)]
    while stack:
        p0, d, length, radius, level = stack.pop()
        d = d / np.linalg.norm(d)
        p1 = p0 + d * length * rng.uniform(0.8, 1.2)
        segments.append((p0, p1, radius))
        if level + 1 >= depth:
            continue
        perp = np.cross(d, rng.normal(size=3))
        perp /= max(np.linalg.norm(perp), 1e-9)
        for sign in (1.0, -1.0):
            angle = math.radians(rng.uniform(*spread_deg)) * sign
            child = _rotate(d, perp, angle)
            child = _rotate(child, d, rng.uniform(-0.6, 0.6))
            stack.append((p1, child, length * length_ratio, radius * radius_ratio, level + 1))
    return segments


def _smooth_texture(canvas: _Canvas, rng: np.random.Generator, amplitude: float, n_waves: int = 5):
    """Low-frequency random field (sum of plane waves, wavelengths 15-45 mm), zero mean."""
    z, y, x = canvas.z[:, None, None], canvas.y[None, :, None], canvas.x[None, None, :]
    field = np.zeros(canvas.vol.shape, np.float32)
    for _ in range(n_waves):
        k = rng.normal(size=3)
        k *= 2 * math.pi / (np.linalg.norm(k) * rng.uniform(15.0, 45.0))
        field += np.sin(
            np.float32(k[0]) * z + np.float32(k[1]) * y + np.float32(k[2]) * x + rng.uniform(0, 6.3)
        )
    return field * np.float32(amplitude / math.sqrt(n_waves / 2))


def _correlated_noise(shape, rng: np.random.Generator, sigma_hu: float) -> np.ndarray:
    """Gaussian noise smoothed in-plane with a [1, 2, 1]/4 kernel (CT noise is not white), std ``sigma_hu``."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    for axis in (1, 2):
        padded = np.concatenate([noise.take([0], axis), noise, noise.take([-1], axis)], axis=axis)
        n = noise.shape[axis]
        noise = (
            0.25 * padded.take(range(0, n), axis) + 0.5 * noise + 0.25 * padded.take(range(2, n + 2), axis)
        )
    # each [1, 2, 1]/4 pass keeps 0.375 of the variance
    return noise * np.float32(sigma_hu / 0.375)


def make_phantom(
    shape: tuple[int, int, int] = (160, 192, 192),
    voxel_mm: float = 0.75,
    seed: int = 0,
    *,
    noise_hu: float = 12.0,
) -> Volume:
    """Build a CT-like thin-slice ground truth (chest and upper abdomen) in HU.

    Parameters
    ----------
    shape : (slices, rows, columns); slices advance along +z (superior), rows along +y (posterior),
        columns along +x (patient left), as in an axial DICOM series.
    voxel_mm : isotropic voxel size; also the slice thickness of the returned geometry.
    seed : the random layout (vessel trees, nodules, textures, noise) is a function of the seed only.
    noise_hu : standard deviation of the added in-plane correlated noise (0 for none).

    Returns
    -------
    Volume
        float32 HU array ``(slice, row, column)`` with a regular geometry of spacing and thickness
        ``voxel_mm``, origin at the centre of the grid in-plane and z = 0 at the first slice.

    Notes
    -----
    The anatomy layout scales with the field of view (a fraction of the in-plane extent and of the
    z extent); fine structures (vessels, airway walls, ribs, nodules) keep their size in millimetres,
    with radii of at least half a voxel. The default 160x192x192 phantom builds in a few seconds.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ParameterError(f"Phantom shape must be three sizes of at least 8 voxels, got {shape}.")
    if not voxel_mm > 0:
        raise ParameterError(f"Phantom voxel size must be positive, got {voxel_mm} mm.")
    # The painting order matters: later tissues overwrite earlier ones, and each step draws from ``rng``.
    rng = np.random.default_rng(seed)
    canvas = _Canvas.empty(shape, voxel_mm)
    layout = _Layout.of(shape, float(voxel_mm))
    texture = _paint_body(canvas, rng, layout)
    _paint_abdomen(canvas, rng, layout)
    lung = _paint_lungs_and_heart(canvas, layout)
    _paint_pulmonary_vessels(canvas, rng, layout, lung)
    _paint_airways(canvas, rng, layout, lung)
    _paint_nodules(canvas, rng, lung)
    _paint_aorta(canvas, layout)
    _paint_spine_and_ribs(canvas, rng, layout.spine_y, layout.body_ay, layout.body_ax, layout.zlen)

    # Mild texture inside soft tissue and CT-like noise.
    soft = (canvas.vol > -200) & (canvas.vol < 150)
    canvas.vol += np.where(soft, texture * np.float32(8.0), np.float32(0.0))
    if noise_hu > 0:
        canvas.vol += _correlated_noise(shape, rng, noise_hu)

    n0, n1, n2 = shape
    vox = layout.vox
    geometry = make_geometry(
        shape,
        slice_spacing_mm=vox,
        pixel_spacing_mm=(vox, vox),
        slice_thickness_mm=vox,
        origin_lps=(-(n2 - 1) / 2 * vox, -(n1 - 1) / 2 * vox, 0.0),
        description=f"SR4ZCT phantom (seed {seed})",
    )
    return Volume(canvas.vol, geometry, metadata={"source": "sr4zct.demo.phantom", "seed": str(seed)})


@dataclass(frozen=True)
class _Layout:
    """The sizes the anatomy is laid out by (mm): the voxel, the z extent, the body's semi-axes."""

    vox: float
    zlen: float
    body_ay: float
    body_ax: float

    @classmethod
    def of(cls, shape: tuple[int, int, int], vox: float) -> _Layout:
        n0, n1, n2 = shape
        half_y, half_x = (n1 - 1) / 2 * vox, (n2 - 1) / 2 * vox
        return cls(vox=vox, zlen=n0 * vox, body_ay=0.74 * half_y, body_ax=0.92 * half_x)

    @property
    def min_r(self) -> float:
        """Smallest radius drawn: half a voxel."""
        return 0.5 * self.vox

    @property
    def spine_y(self) -> float:
        return 0.62 * self.body_ay

    def zz(self, fraction: float) -> float:
        """A height as a fraction of the z extent."""
        return fraction * self.zlen


def _paint_body(canvas: _Canvas, rng: np.random.Generator, layout: _Layout) -> np.ndarray:
    """Body, skin, subcutaneous fat, muscle wall, viscera with visceral fat; returns the soft-tissue
    texture (added at the end)."""
    vox, body_ay, body_ax = layout.vox, layout.body_ay, layout.body_ax
    body_centre = (0.0, 0.0)
    z_all = (-2 * vox, layout.zlen + 2 * vox)
    _paint_column(canvas, body_centre, (body_ay, body_ax), z_all, HU["skin"])
    _paint_column(canvas, body_centre, (body_ay - 1.5, body_ax - 1.5), z_all, HU["fat"])
    wall = 0.09 * body_ay
    _paint_column(canvas, body_centre, (body_ay - wall, body_ax - wall), z_all, HU["muscle"])
    inner_ay, inner_ax = body_ay - 1.6 * wall, body_ax - 1.6 * wall
    _paint_column(canvas, body_centre, (inner_ay, inner_ax), z_all, HU["viscera"])
    texture = _smooth_texture(canvas, rng, 1.0)
    inner_box = canvas.box(
        np.array([z_all[0], -inner_ay, -inner_ax]), np.array([z_all[1], inner_ay, inner_ax])
    )
    # visceral fat: where the texture is high the viscera turn into fat
    fat_share = np.clip((texture[inner_box] - 0.6) * 2.0, 0.0, 1.0)
    inside = _inside_column(canvas, inner_box, body_centre, (inner_ay - 2, inner_ax - 2))
    canvas.paint(inner_box, fat_share * inside, HU["fat"])
    return texture


def _paint_abdomen(canvas: _Canvas, rng: np.random.Generator, layout: _Layout) -> None:
    """Liver with its vessels, spleen, kidneys with their sinus fat, bowel gas (drawn before the lungs,
    which carve the domed liver top)."""
    zz, zlen, body_ay, body_ax, min_r = layout.zz, layout.zlen, layout.body_ay, layout.body_ax, layout.min_r
    liver_c = (zz(0.2), -0.05 * body_ay, -0.42 * body_ax)
    _paint_ellipsoid(
        canvas, liver_c, (0.26 * zlen, 0.62 * body_ay, 0.42 * body_ax), HU["liver"], angle_deg=-15
    )
    liver_mask = (np.abs(canvas.vol - HU["liver"]) < 1.0).astype(np.float32)
    for segment in _branch_tree(
        rng,
        np.array([zz(0.25), 0.1 * body_ay, -0.2 * body_ax]),
        np.array([-0.3, -0.2, -1.0]),
        length_mm=0.22 * body_ax,
        radius_mm=max(2.2, min_r),
        depth=3,
    ):
        _paint_capsule(
            canvas, segment[0], segment[1], max(segment[2], min_r), HU["liver_vessel"], mask=liver_mask
        )
    _paint_ellipsoid(
        canvas,
        (zz(0.24), 0.3 * body_ay, 0.6 * body_ax),
        (0.12 * zlen, 0.28 * body_ay, 0.18 * body_ax),
        HU["spleen"],
        angle_deg=25,
    )
    for side in (-1.0, 1.0):
        kc = (zz(0.08), 0.5 * body_ay, side * 0.42 * body_ax)
        _paint_ellipsoid(
            canvas, kc, (0.13 * zlen, 0.22 * body_ay, 0.13 * body_ax), HU["kidney"], angle_deg=side * 25
        )
        sinus = (kc[0], kc[1] - 0.02 * body_ay, kc[2] - side * 0.05 * body_ax)
        _paint_ellipsoid(
            canvas, sinus, (0.06 * zlen, 0.08 * body_ay, 0.04 * body_ax), HU["sinus_fat"], angle_deg=side * 25
        )
    _paint_ellipsoid(
        canvas,
        (zz(0.2), -0.55 * body_ay, 0.3 * body_ax),
        (0.05 * zlen, 0.12 * body_ay, 0.16 * body_ax),
        HU["bowel_gas"],
    )


def _paint_lungs_and_heart(canvas: _Canvas, layout: _Layout) -> np.ndarray:
    """Lungs: tapering ellipses in-plane above a domed diaphragm, the heart carved out. Returns the lung
    occupancy (0 in the heart and on partial-volume rims) that clips vessels and small airways."""
    zz, zlen, body_ay, body_ax = layout.zz, layout.zlen, layout.body_ay, layout.body_ax
    lung = np.zeros(canvas.vol.shape, np.float32)
    z3 = canvas.z[:, None, None]
    for side, dome_base in ((-1.0, 0.4), (1.0, 0.34)):
        cy, cx = -0.06 * body_ay, side * 0.45 * body_ax
        ly, lx = 0.66 * body_ay, 0.36 * body_ax
        taper = 1.0 - 0.35 * np.clip((z3 / zlen - 0.55) / 0.65, 0.0, 1.0) ** 2
        dy = canvas.y[None, :, None] - cy
        dx = canvas.x[None, None, :] - cx
        zero = np.zeros((1, 1, 1), np.float32)
        d_plane = _ellipsoid_distance(zero, dy / taper, dx / taper, 1.0, ly, lx) * taper
        rho2 = np.clip((dy / ly) ** 2 + (dx / lx) ** 2, 0.0, 1.0)
        dome = zz(dome_base) + 0.16 * zlen * (1.0 - rho2)
        d_dome = dome - z3
        lung = np.maximum(lung, _occupancy(np.maximum(d_plane, d_dome), layout.vox))
    canvas.paint((slice(None),) * 3, lung, HU["lung"])
    heart_c = (zz(0.5), -0.4 * body_ay, 0.1 * body_ax)
    heart_semi = (0.2 * zlen, 0.36 * body_ay, 0.3 * body_ax)
    _paint_ellipsoid(canvas, heart_c, heart_semi, HU["heart"], angle_deg=20)
    lung[canvas.vol > -500] = 0.0  # the heart and partial-volume rims are no lung for vessels
    return lung


def _paint_pulmonary_vessels(
    canvas: _Canvas, rng: np.random.Generator, layout: _Layout, lung: np.ndarray
) -> None:
    """Trees from each hilum, clipped to the lungs."""
    for side in (-1.0, 1.0):
        hilum = np.array([layout.zz(0.62), -0.05 * layout.body_ay, side * 0.2 * layout.body_ax])
        n_roots = 9
        for i in range(n_roots):
            # roots fanned out over the lateral half-sphere (golden-angle spiral), then jittered
            dz = 1.0 - 2.0 * (i + 0.5) / n_roots
            around = i * 2.39996 + rng.uniform(-0.3, 0.3)
            ring = math.sqrt(1.0 - dz * dz)
            direction = np.array([dz, ring * math.cos(around), side * (0.5 + abs(ring * math.sin(around)))])
            for p0, p1, radius in _branch_tree(
                rng, hilum, direction, length_mm=14.0, radius_mm=1.5, depth=7, length_ratio=0.82
            ):
                _paint_capsule(canvas, p0, p1, max(radius, layout.min_r), HU["vessel"], mask=lung)


def _paint_airways(canvas: _Canvas, rng: np.random.Generator, layout: _Layout, lung: np.ndarray) -> None:
    """Trachea, main bronchi and two more generations; all walls first, then all lumens."""
    zz, zlen, body_ay, body_ax, vox = layout.zz, layout.zlen, layout.body_ay, layout.body_ax, layout.vox
    carina = np.array([zz(0.74), -0.12 * body_ay, 0.0])
    trachea_r = max(0.07 * body_ax, 2 * vox)
    central = [(np.array([zlen + 4 * vox, -0.12 * body_ay, 0.0]), carina, trachea_r)]
    peripheral = []
    for side in (-1.0, 1.0):
        tip = carina + np.array([-0.1 * zlen, 0.05 * body_ay, side * 0.22 * body_ax])
        central.append((carina, tip, trachea_r * 0.7))
        peripheral += _branch_tree(
            rng,
            tip,
            tip - carina,
            length_mm=0.12 * zlen,
            radius_mm=trachea_r * 0.5,
            depth=3,
            radius_ratio=0.75,
        )
    # trachea and main bronchi run in the mediastinum; smaller airways stay inside the lungs
    airway = [(seg, None) for seg in central] + [(seg, lung) for seg in peripheral]
    wall_mm = max(0.9, 0.8 * vox)
    for (p0, p1, radius), mask in airway:
        _paint_capsule(canvas, p0, p1, max(radius, layout.min_r) + wall_mm, HU["airway_wall"], mask=mask)
    for (p0, p1, radius), mask in airway:
        _paint_capsule(canvas, p0, p1, max(radius, layout.min_r), HU["airway_lumen"], mask=mask)


def _paint_nodules(canvas: _Canvas, rng: np.random.Generator, lung: np.ndarray) -> None:
    """Five nodules, 3-8 mm, spread over the lung height (one of them ground glass)."""
    deep_lung = np.argwhere(lung[:, ::2, ::2] > 0.999)
    if not len(deep_lung):
        return
    n_nodules = 5
    order = np.argsort(deep_lung[:, 0])
    picks = [order[int(q * (len(order) - 1))] for q in np.linspace(0.1, 0.9, n_nodules)]
    for i, pick in enumerate(picks):
        k, j, m = deep_lung[pick] * np.array([1, 2, 2])
        diameter = rng.uniform(3.0, 8.0)
        centre = (canvas.z[k], canvas.y[j], canvas.x[m])
        hu = HU["ground_glass"] if i == 2 else HU["nodule"] + rng.uniform(-10, 10)
        _paint_ellipsoid(canvas, centre, (diameter / 2,) * 3, hu)


def _paint_aorta(canvas: _Canvas, layout: _Layout) -> None:
    """The descending aorta, slightly oblique, in front of the spine."""
    vox, zlen, body_ay, body_ax, spine_y = (
        layout.vox,
        layout.zlen,
        layout.body_ay,
        layout.body_ax,
        layout.spine_y,
    )
    _paint_capsule(
        canvas,
        (-4 * vox, spine_y - 0.3 * body_ay, 0.12 * body_ax),
        (zlen + 4 * vox, spine_y - 0.36 * body_ay, 0.08 * body_ax),
        0.11 * body_ay,
        HU["blood"],
    )


def _inside_column(canvas: _Canvas, box, centre_yx, semi_yx) -> np.ndarray:
    zero = np.zeros((1, 1, 1), np.float32)
    _, y, x = canvas.grid(box)
    dist = _ellipsoid_distance(zero, y - centre_yx[0], x - centre_yx[1], 1.0, *semi_yx)
    return _occupancy(dist, canvas.voxel_mm)


def _paint_spine_and_ribs(
    canvas: _Canvas, rng, spine_y: float, body_ay: float, body_ax: float, zlen: float
) -> None:
    vox = canvas.voxel_mm
    by, bx = 0.17 * body_ay, 0.2 * body_ay  # vertebral body semi-axes
    period = max(0.13 * zlen, 10 * vox)
    disc = max(0.22 * period, 2.5 * vox)
    cortex = max(1.2, vox)
    canal_y = spine_y + by + 0.1 * body_ay
    canal_r = 0.09 * body_ay
    z_all = (-2 * vox, zlen + 2 * vox)
    _paint_column(canvas, (spine_y, 0.0), (by, bx), z_all, HU["disc"])
    _paint_column(canvas, (canal_y, 0.0), (canal_r, canal_r), z_all, HU["cord"])
    offset = rng.uniform(0, period)
    rib_ax, rib_ay = body_ax - 0.16 * body_ay, 0.84 * body_ay
    for k in range(-1, int(zlen / period) + 2):
        z0 = offset + k * period + disc / 2
        z1 = offset + (k + 1) * period - disc / 2
        _paint_column(canvas, (spine_y, 0.0), (by, bx), (z0, z1), HU["cortical_bone"])
        _paint_column(
            canvas,
            (spine_y, 0.0),
            (by - cortex, bx - cortex),
            (z0 + cortex, z1 - cortex),
            HU["cancellous_bone"],
        )
        # posterior arch (a ring around the canal over the middle of the vertebra) and spinous process
        za, zb = z0 + 0.2 * (z1 - z0), z1 - 0.15 * (z1 - z0)
        _paint_column(canvas, (canal_y, 0.0), (canal_r + 2.5, canal_r + 2.5), (za, zb), HU["cortical_bone"])
        _paint_column(canvas, (canal_y, 0.0), (canal_r, canal_r), (za - vox, zb + vox), HU["cord"])
        mid = (za + zb) / 2
        _paint_capsule(
            canvas,
            (mid, canal_y + canal_r + 1.5, 0.0),
            (mid - 0.5 * period, canal_y + canal_r + 0.2 * body_ay, 0.0),
            2.0,
            HU["cortical_bone"],
        )
        for side in (-1.0, 1.0):
            root = np.array([mid, canal_y - 0.3 * canal_r, side * (canal_r + 1.5)])
            tip = np.array([mid + 0.1 * period, canal_y - 0.2 * canal_r, side * (bx + 0.12 * body_ax)])
            _paint_capsule(canvas, root, tip, 2.2, HU["cortical_bone"])
            # rib: starts at the transverse process, follows the body wall, slopes down anteriorly
            angles = np.linspace(0.5, 2.45, 12)
            drop = rng.uniform(1.0, 1.4) * period
            pts = [
                np.array(
                    [
                        mid - drop * (a - angles[0]) / (angles[-1] - angles[0]),
                        rib_ay * math.cos(a),
                        side * rib_ax * math.sin(a),
                    ]
                )
                for a in angles
            ]
            pts[0] = tip
            radius = max(2.0, 1.5 * vox)
            for p0, p1 in zip(pts[:-1], pts[1:], strict=True):
                _paint_capsule(canvas, p0, p1, radius, HU["rib_cortex"])
            for p0, p1 in zip(pts[:-1], pts[1:], strict=True):
                _paint_capsule(canvas, p0, p1, max(radius - 0.9, 0.5 * vox), HU["marrow"])


def make_demo_case(
    thickness_mm: float = 3.0,
    spacing_mm: float = 2.0,
    profile: str = "box",
    seed: int = 0,
    shape: tuple[int, int, int] = (160, 192, 192),
    voxel_mm: float = 0.75,
    *,
    phase_mm: float | None = None,
    noise_hu: float = 12.0,
) -> tuple[Volume, Volume]:
    """A phantom and its thick-slice acquisition along z.

    Parameters
    ----------
    thickness_mm, spacing_mm : slice thickness T and spacing d of the simulated acquisition.
    profile : slice sensitivity profile, ``"box"`` or ``"gaussian"`` (FWHM = T).
    seed, shape, voxel_mm, noise_hu : passed to :func:`make_phantom`.
    phase_mm : offset of the first thick slice's start from the phantom's first voxel edge, in
        ``[0, spacing_mm)``. Default: the phase that puts the first thick slice centre on a phantom voxel
        centre, so that an output grid with the voxel spacing starting there coincides with the phantom's
        slices and scoring needs no interpolation (which would blur every method alike).

    Returns
    -------
    ground_truth, thick : Volume
        The thin-slice phantom and the simulated series (thickness T, spacing d, origin at the first
        thick slice centre in the phantom's physical coordinates).
    """
    from sr4zct.demo.evaluation import aligned_phase_mm, simulate_acquisition

    ground_truth = make_phantom(shape, voxel_mm, seed, noise_hu=noise_hu)
    if phase_mm is None:
        phase_mm = aligned_phase_mm(thickness_mm, spacing_mm, voxel_mm)
    thick = simulate_acquisition(ground_truth, thickness_mm, spacing_mm, profile=profile, phase_mm=phase_mm)
    return ground_truth, thick
