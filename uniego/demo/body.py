"""Forward kinematics of the demo actor: exercise -> pose parameters -> 3-D COCO-17 joints.

World frame: y up, the actor faces +z (towards the exo camera) before its yaw; the actor's
left side is +x. Angles in radians. `s = (1 - cos theta) / 2` is the repetition signal (0 at
rest, 1 at the peak). Two pairs of classes differ only in leg motion that happens behind the
body (kickbacks), which the head camera cannot see: the exo view and the skeleton can. Their
one ego cue is weak: the torso tips forward by a few degrees with each kick (`KICK_LEAN`), and
the head camera, which pitches with the torso, bobs with it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CLASSES = ["squat", "lunge", "jumping_jack", "clap_jack", "high_knee",
           "arm_circle", "arm_circle_kickback", "front_raise", "front_raise_kickback"]
IDLE = "idle"  # label of the transitions in the long sessions

JOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
          "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
          "left_knee", "right_knee", "left_ankle", "right_ankle"]
HEAD_JOINTS = (0, 1, 2, 3, 4)
KICK_LEAN = 0.025  # radians of forward torso tip at a kick's peak (x amplitude): the ego view's only cue


@dataclasses.dataclass(frozen=True)
class Body:
    """Per-clip body proportions (metres) and placement."""
    height: float
    thigh: float
    shin: float
    torso: float
    upper_arm: float
    forearm: float
    shoulder_half: float
    hip_half: float
    x: float
    z: float
    yaw: float

    @staticmethod
    def sample(rng: np.random.Generator) -> "Body":
        h = rng.uniform(1.55, 1.9)
        j = lambda: rng.uniform(0.92, 1.08)  # noqa: E731  per-segment jitter
        return Body(h, 0.245 * h * j(), 0.245 * h * j(), 0.30 * h * j(), 0.17 * h * j(), 0.16 * h * j(),
                    0.11 * h * j(), 0.08 * h * j(), rng.uniform(-0.25, 0.25), rng.uniform(-0.3, 0.3),
                    rng.uniform(-0.3, 0.3))


def _limb(sgn, a, b):
    """Leg direction: flexion a forward (about x), abduction b outward."""
    return np.array([sgn * np.sin(b), -np.cos(a) * np.cos(b), np.sin(a) * np.cos(b)])


def _arm(sgn, e, az):
    """Arm direction: elevation e from hanging (0) to overhead (pi), azimuth az from sideways to forward."""
    return np.array([sgn * np.sin(e) * np.cos(az), -np.cos(e), np.sin(e) * np.sin(az)])


REST = dict(lean=0.0, hop=0.0, la=0.0, lb=0.05, lc=0.05, ra=0.0, rb=0.05, rc=0.05,
            le=0.15, laz=0.0, lel=0.2, re=0.15, raz=0.0, rel=0.2)


def pose_params(exercise: str, theta: float, amp: float) -> dict:
    """Pose parameters of `exercise` at phase theta (radians) and amplitude amp (~1)."""
    s = (1 - np.cos(theta)) / 2
    p = dict(REST)
    kick = lambda ph: 2.1 * amp * max(0.0, np.sin(ph))  # noqa: E731  heel towards the buttock
    if exercise == "squat":
        p.update(la=1.4 * amp * s, lc=2.1 * amp * s, ra=1.4 * amp * s, rc=2.1 * amp * s, lean=0.55 * amp * s,
                 le=1.5 * s + 0.1, laz=1.5, re=1.5 * s + 0.1, raz=1.5, lel=0.0, rel=0.0)
    elif exercise == "lunge":
        left_front = int(np.floor(theta / (2 * np.pi))) % 2 == 0
        f, b = ("l", "r") if left_front else ("r", "l")
        p.update({f"{f}a": 1.1 * amp * s, f"{f}c": 1.6 * amp * s, f"{b}a": -0.5 * amp * s, f"{b}c": 1.5 * amp * s},
                 lean=0.1 * s, le=0.45, re=0.45, laz=-0.3, raz=-0.3, lel=1.7, rel=1.7)
    elif exercise in ("jumping_jack", "clap_jack"):
        p.update(lb=0.06 + 0.3 * amp * s, rb=0.06 + 0.3 * amp * s, hop=0.04 * np.sin(theta) ** 2)
        if exercise == "jumping_jack":
            p.update(le=0.2 + 2.6 * amp * s, re=0.2 + 2.6 * amp * s, laz=0.0, raz=0.0, lel=0.1, rel=0.1)
        else:
            p.update(le=1.5, re=1.5, laz=1.8 * s, raz=1.8 * s, lel=0.15, rel=0.15)
    elif exercise == "high_knee":
        kl, kr = max(0.0, np.sin(theta)), max(0.0, np.sin(theta + np.pi))
        p.update(la=1.6 * amp * kl, lc=1.9 * amp * kl, ra=1.6 * amp * kr, rc=1.9 * amp * kr,
                 le=0.6 * amp * np.sin(theta + np.pi), re=0.6 * amp * np.sin(theta), laz=1.57, raz=1.57,
                 lel=1.3, rel=1.3, hop=0.02 * abs(np.sin(theta)))
    elif exercise.startswith("arm_circle"):
        p.update(le=1.57 + 0.35 * amp * np.sin(theta), re=1.57 + 0.35 * amp * np.sin(theta),
                 laz=0.35 * amp * np.cos(theta), raz=0.35 * amp * np.cos(theta), lel=0.05, rel=0.05)
    elif exercise.startswith("front_raise"):
        p.update(le=0.2 + 1.4 * amp * s, re=0.2 + 1.4 * amp * s, laz=1.45, raz=1.45, lel=0.05, rel=0.05)
    elif exercise != IDLE:
        raise ValueError(f"unknown exercise {exercise!r}")
    if exercise.endswith("_kickback"):
        # the legs kick behind the body, out of the head camera's view; the torso tips forward a
        # little with each kick (as a person's does), so the ego camera bobs: a weak, brief ego cue
        p.update(lc=REST["lc"] + kick(2 * theta), rc=REST["rc"] + kick(2 * theta + np.pi),
                 lean=p["lean"] + KICK_LEAN * amp * abs(np.sin(2 * theta)))
    return p


def blend(p0: dict, p1: dict, w: float) -> dict:
    return {k: (1 - w) * p0[k] + w * p1[k] for k in p0}


def joints(body: Body, p: dict) -> np.ndarray:
    """Pose parameters -> world joints [17, 3] (COCO order), feet on the floor (y = 0)."""
    J = np.zeros((17, 3))
    for sgn, side, hip, knee, ankle in ((1, "l", 11, 13, 15), (-1, "r", 12, 14, 16)):
        a, b, c = p[side + "a"], p[side + "b"], p[side + "c"]
        J[hip] = [sgn * body.hip_half, 0, 0]
        J[knee] = J[hip] + body.thigh * _limb(sgn, a, b)
        J[ankle] = J[knee] + body.shin * _limb(sgn, a - c, b)
    spine = np.array([0, np.cos(p["lean"]), np.sin(p["lean"])])
    neck = spine * body.torso
    h = body.height
    for sgn, side, sh, el, wr in ((1, "l", 5, 7, 9), (-1, "r", 6, 8, 10)):
        J[sh] = neck + [sgn * body.shoulder_half, -0.02 * h, 0]
        d = _arm(sgn, p[side + "e"], p[side + "az"])
        J[el] = J[sh] + body.upper_arm * d
        up = np.array([0.0, 1.0, 0.3]) - d * (d @ np.array([0.0, 1.0, 0.3]))
        up /= np.linalg.norm(up) + 1e-9
        J[wr] = J[el] + body.forearm * (np.cos(p[side + "el"]) * d + np.sin(p[side + "el"]) * up)
    nose = neck + 0.10 * h * spine + [0, 0, 0.06 * h]
    J[0] = nose
    J[1], J[2] = nose + [0.03 * h, 0.03 * h, -0.02 * h], nose + [-0.03 * h, 0.03 * h, -0.02 * h]
    J[3], J[4] = nose + [0.07 * h, 0.02 * h, -0.08 * h], nose + [-0.07 * h, 0.02 * h, -0.08 * h]
    J[:, 1] += -min(J[15, 1], J[16, 1]) + 0.03 * h + p["hop"] * h
    c, s = np.cos(body.yaw), np.sin(body.yaw)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return J @ rot.T + [body.x, 0, body.z]


def facing(body: Body) -> np.ndarray:
    return np.array([np.sin(body.yaw), 0.0, np.cos(body.yaw)])
