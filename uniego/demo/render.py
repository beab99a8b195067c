"""Software renderer for the demo: pinhole cameras, a textured floor and wall, and the actor
as z-buffered capsules (limbs) and discs (head, hands). numpy only; a 96-px frame takes ~1 ms.

exo: fixed camera in front of the actor, whole body visible.
ego: camera on the head joint, looking forward and down (it sees hands, sometimes knees and
feet, and the floor texture moving with the head); the head itself is not drawn.
"""

from __future__ import annotations

import dataclasses

import numpy as np

BONES = [(5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16)]
PARTS = ["background", "torso", "upper_arm", "forearm", "hand", "thigh", "shin", "foot", "head"]
BONE_PARTS = {5: "upper_arm", 6: "upper_arm", 7: "forearm", 8: "forearm", 11: "thigh", 12: "thigh",
              13: "shin", 14: "shin"}   # a bone's part, by its first joint
FAR = 50.0   # depth (m) where a ray hits neither floor nor wall


@dataclasses.dataclass(frozen=True)
class Camera:
    position: np.ndarray
    right: np.ndarray
    up: np.ndarray
    forward: np.ndarray
    focal: float      # pixels
    width: int
    height: int

    @staticmethod
    def look(position, forward, *, fov_deg: float, width: int, height: int) -> "Camera":
        f = np.asarray(forward, float) / np.linalg.norm(forward)
        r = np.cross(f, [0.0, 1.0, 0.0])
        r /= np.linalg.norm(r)
        u = np.cross(r, f)
        focal = (width / 2) / np.tan(np.radians(fov_deg) / 2)
        return Camera(np.asarray(position, float), r, u, f, focal, width, height)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [..., 3] -> pixel coords [..., 2] (x right, y down) and depth [...]."""
        d = points - self.position
        z = d @ self.forward
        zs = np.maximum(z, 1e-6)
        x = self.width / 2 + self.focal * (d @ self.right) / zs
        y = self.height / 2 - self.focal * (d @ self.up) / zs
        return np.stack([x, y], -1), z

    def rays(self) -> np.ndarray:
        """Unnormalised world ray direction per pixel [H, W, 3]."""
        xs = (np.arange(self.width) + 0.5 - self.width / 2) / self.focal
        ys = (np.arange(self.height) + 0.5 - self.height / 2) / self.focal
        return (self.forward[None, None] + xs[None, :, None] * self.right[None, None]
                - ys[:, None, None] * self.up[None, None])


@dataclasses.dataclass(frozen=True)
class Scene:
    """Per-clip appearance: floor checker colours and tile size, wall colour, clothing, skin."""
    floor_a: np.ndarray
    floor_b: np.ndarray
    tile: float
    wall: np.ndarray
    wall_z: float
    shirt: np.ndarray
    pants: np.ndarray
    skin: np.ndarray

    @staticmethod
    def sample(rng: np.random.Generator) -> "Scene":
        base = rng.uniform(60, 200, 3)
        return Scene(base, np.clip(base + rng.uniform(-70, 70, 3), 0, 255), rng.uniform(0.25, 0.6),
                     rng.uniform(90, 230, 3), -rng.uniform(2.0, 3.5), rng.uniform(20, 255, 3),
                     rng.uniform(20, 200, 3), np.array([224, 172, 140]) * rng.uniform(0.6, 1.1))


def background(cam: Camera, scene: Scene, *, depth: bool = False):
    """Floor (y = 0, checker) and back wall (z = wall_z, vertical stripes), [H, W, 3] float;
    with depth=True also the depth along the camera's axis [H, W] (FAR where nothing is hit)."""
    rays = cam.rays()
    img = np.empty(rays.shape, np.float32)
    # wall: ray hits plane z = wall_z
    dz = rays[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        tw = np.where(dz < -1e-6, (scene.wall_z - cam.position[2]) / dz, np.inf)
        tf = np.where(rays[..., 1] < -1e-6, -cam.position[1] / rays[..., 1], np.inf)
    hit_floor = tf < tw
    pw = cam.position + rays * np.where(np.isfinite(tw), tw, 0)[..., None]
    stripes = (np.floor(pw[..., 0] / 0.4) % 2)[..., None]
    img[:] = scene.wall * (0.85 + 0.15 * stripes)
    far = ~np.isfinite(tw) & ~hit_floor
    img[far] = scene.wall * 0.7
    pf = cam.position + rays * np.where(hit_floor, tf, 0)[..., None]
    checker = ((np.floor(pf[..., 0] / scene.tile) + np.floor(pf[..., 2] / scene.tile)) % 2)[..., None]
    floor = scene.floor_a * (1 - checker) + scene.floor_b * checker
    fog = np.exp(-0.08 * np.where(hit_floor, tf * np.linalg.norm(rays, axis=-1), 0))[..., None]
    img = np.where(hit_floor[..., None], floor * fog + scene.wall * 0.6 * (1 - fog), img)
    if not depth:
        return img.astype(np.float32)
    # rays have unit length along `forward`, so the ray parameter is the depth
    z = np.where(hit_floor, tf, np.where(np.isfinite(tw), tw, FAR))
    return img.astype(np.float32), np.minimum(z, FAR).astype(np.float32)


def _capsule(img, zbuf, p0, p1, z0, z1, r0, r1, color, ids=None, part=0):
    """Draw a 2-D capsule from p0 to p1 (radii r0, r1 px, depths z0, z1) with depth test; `ids`
    (optional, [H, W]) gets `part` where the capsule is drawn."""
    H, W = zbuf.shape
    rmax = max(r0, r1)
    x0, x1 = int(max(0, np.floor(min(p0[0], p1[0]) - rmax))), int(min(W, np.ceil(max(p0[0], p1[0]) + rmax) + 1))
    y0, y1 = int(max(0, np.floor(min(p0[1], p1[1]) - rmax))), int(min(H, np.ceil(max(p0[1], p1[1]) + rmax) + 1))
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    d = p1 - p0
    L2 = float(d @ d)
    t = np.clip(((xs - p0[0]) * d[0] + (ys - p0[1]) * d[1]) / L2, 0, 1) if L2 > 1e-9 else np.zeros_like(xs)
    dist = np.hypot(xs - (p0[0] + t * d[0]), ys - (p0[1] + t * d[1]))
    r = r0 + t * (r1 - r0)
    z = z0 + t * (z1 - z0)
    inside = (dist <= r) & (z < zbuf[y0:y1, x0:x1])
    shade = 1.0 - 0.35 * (dist / np.maximum(r, 1e-6)) ** 2  # rounded look
    patch = img[y0:y1, x0:x1]
    patch[inside] = (color[None] * shade[inside][:, None])
    zbuf[y0:y1, x0:x1][inside] = z[inside]
    if ids is not None:
        ids[y0:y1, x0:x1][inside] = part


def draw_actor(img: np.ndarray, cam: Camera, J: np.ndarray, height: float, scene: Scene, *, ego: bool,
               zbuf: np.ndarray | None = None, ids: np.ndarray | None = None) -> None:
    """Draw the actor's limbs, torso, hands, feet (and head unless ego) into img in place.
    Optional [H, W] outputs: `zbuf` (inf-filled) gets the actor's depth, `ids` its PARTS index."""
    zbuf = np.full(img.shape[:2], np.inf, np.float32) if zbuf is None else zbuf
    near = 0.08
    mid_hip, mid_sh = (J[11] + J[12]) / 2, (J[5] + J[6]) / 2
    face = np.cross(J[5] - J[6], [0.0, 1.0, 0.0])
    face = face / (np.linalg.norm(face) + 1e-9)
    toe = lambda a: J[a] + 0.09 * height * face - [0, 0.02 * height, 0]  # noqa: E731
    torso = PARTS.index("torso")
    parts = [(mid_hip, mid_sh, 0.085, 0.095, scene.shirt, torso), (J[11], J[5], 0.05, 0.05, scene.shirt, torso),
             (J[12], J[6], 0.05, 0.05, scene.shirt, torso), (J[5], J[6], 0.05, 0.05, scene.shirt, torso)]
    for a, b in BONES:
        upper_arm = a in (5, 6)
        color = scene.shirt * 0.85 if upper_arm else (scene.skin if a in (7, 8) else scene.pants)
        parts.append((J[a], J[b], 0.035 if a in (5, 6, 7, 8) else 0.05, 0.03 if a in (5, 6, 7, 8) else 0.04, color,
                      PARTS.index(BONE_PARTS[a])))
    parts += [(J[15], toe(15), 0.03, 0.03, scene.pants * 0.5, PARTS.index("foot")),
              (J[16], toe(16), 0.03, 0.03, scene.pants * 0.5, PARTS.index("foot")),
              (J[9], J[9], 0.045, 0.045, scene.skin, PARTS.index("hand")),
              (J[10], J[10], 0.045, 0.045, scene.skin, PARTS.index("hand"))]
    if not ego:
        head = (J[3] + J[4]) / 2
        parts.append((head, head, 0.11, 0.11, scene.skin, PARTS.index("head")))
    for a, b, ra, rb, color, part in parts:
        (p, z) = cam.project(np.stack([a, b]))
        if z.min() < near:
            continue
        _capsule(img, zbuf, p[0], p[1], z[0], z[1], ra * height * cam.focal / z[0],
                 rb * height * cam.focal / z[1], np.asarray(color, np.float32), ids, part)


def exo_camera(width: int, height: int, rng: np.random.Generator) -> Camera:
    pos = np.array([rng.uniform(-0.3, 0.3), rng.uniform(1.0, 1.3), rng.uniform(3.6, 4.2)])
    target = np.array([0.0, 0.85, 0.0])
    return Camera.look(pos, target - pos, fov_deg=42, width=width, height=height)


def ego_camera(J: np.ndarray, forward: np.ndarray, pitch: float, width: int, height: int) -> Camera:
    """Head-mounted camera at the face, looking along the body's facing direction, pitched down;
    the torso's lean adds to the pitch, so the view moves with the head."""
    mid_sh, mid_hip = (J[5] + J[6]) / 2, (J[11] + J[12]) / 2
    spine = (mid_sh - mid_hip) / np.linalg.norm(mid_sh - mid_hip)
    lean = np.arctan2(spine @ forward, spine[1])
    p = pitch + lean
    look = forward * np.cos(p) - np.array([0.0, np.sin(p), 0.0])
    pos = J[0] + 0.05 * forward
    return Camera.look(pos, look, fov_deg=110, width=width, height=height)


def render(cam: Camera, J: np.ndarray, height: float, scene: Scene, *, ego: bool, bg: np.ndarray | None = None) -> np.ndarray:
    img = (background(cam, scene) if bg is None else bg).copy()
    draw_actor(img, cam, J, height, scene, ego=ego)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_dense(cam: Camera, J: np.ndarray, height: float, scene: Scene, *, ego: bool,
                 bg: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`render`'s frame (the same pixels) plus what the renderer knows for free: depth along the
    camera axis [H, W] float32 (metres, FAR for the sky) and the body-part index [H, W] uint8
    (PARTS; 0 = background). `bg`: `background(cam, scene, depth=True)`, when the camera is fixed."""
    image, depth = background(cam, scene, depth=True) if bg is None else bg
    img, zbuf, ids = image.copy(), np.full(image.shape[:2], np.inf, np.float32), np.zeros(image.shape[:2], np.uint8)
    draw_actor(img, cam, J, height, scene, ego=ego, zbuf=zbuf, ids=ids)
    return np.clip(img, 0, 255).astype(np.uint8), np.where(ids > 0, zbuf, depth).astype(np.float32), ids
