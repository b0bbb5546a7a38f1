"""A synthetic image-to-video task in Wan latent space whose prompt-following is scored exactly.

A scene is 2–3 objects on an empty 16×16 latent, each a distinct colour (a fixed 16-channel
pattern) and a distinct shape (square, ring, cross; 4×4 latent pixels). The prompt names one
object by colour and shape and an action, one of two kinds:

- a move, "the red square moves left": over the 3 latent frames the named object moves STEP
  pixels per frame. The model must look up where the object came from, an offset that depends on
  the word; a tiny model trained on CPU does not learn that (docs/method.md §10).
- a colour change, "the red square turns blue": the named object stays and fades into the named
  colour (half way in frame 1, fully in the last). This is local to the object's pixels, so the
  action word can be learned, and it is where Focal Guidance's anchor acts: in the object's region.

The others stay as they are. Frame 0 is the reference frame the I2V model is given.

No leak: the named object always starts where all four moves fit, distractors avoid the union of
all four possible paths, and a colour change may name any other colour, also a distractor's, so
the layout says nothing about the action.

Pure torch: scenes, prompts, rendering, decoding and scoring; the text encoder and the model
live in train.py and harness.py. Tensors are in the model's internal latent space (after the
host's ``process_latent_in``), channels first: [16, frames, height, width].
"""
from dataclasses import dataclass
import hashlib

import torch

CHANNELS = 16
FRAMES = 3            # latent frames: the reference + 2 generated (9 video frames at Wan's 4× stride)
SIZE = 16             # latent pixels a side: 8×8 tokens a frame after Wan's 2×2 patches
OBJECT = 4            # object side in latent pixels (2×2 tokens)
STEP = 2              # pixels the named object moves per latent frame
TRAVEL = STEP * (FRAMES - 1)
COLOUR_NORM = 4.0     # pattern norm: about 1 per channel, like a normalised VAE latent

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("square", "ring", "cross")
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
TEMPLATE = "the {colour} {shape} {action}"
TURN_RATE = 0.5      # share of evaluation scenes whose action is a colour change
SPLITS = ("probe", "val", "test")   # evaluation splits; training draws from its own stream
PATTERN_SEED = 20260112


def _shape_masks() -> dict[str, torch.Tensor]:
    square = torch.ones(OBJECT, OBJECT)
    ring = square.clone()
    ring[1:-1, 1:-1] = 0
    cross = torch.zeros(OBJECT, OBJECT)
    cross[1:3, :] = 1
    cross[:, 1:3] = 1
    return {"square": square, "ring": ring, "cross": cross}


SHAPE_MASKS = _shape_masks()


def colour_patterns() -> dict[str, torch.Tensor]:
    """Orthogonal 16-d channel patterns, so each colour's response map ignores the others."""
    gen = torch.Generator().manual_seed(PATTERN_SEED)
    q, _ = torch.linalg.qr(torch.randn(CHANNELS, CHANNELS, generator=gen))
    return {c: q[:, i] * COLOUR_NORM for i, c in enumerate(COLOURS)}


PATTERNS = colour_patterns()


@dataclass(frozen=True)
class Obj:
    colour: str
    shape: str
    y: int   # top-left corner in the reference frame
    x: int


def actions_for(colour: str) -> tuple[str, ...]:
    """Every action a prompt may ask of an object of this colour."""
    return (*(f"moves {d}" for d in DIRECTIONS), *(f"turns {c}" for c in COLOURS if c != colour))


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]   # objects[0] is the named one
    action: str                # "moves left" or "turns blue"

    @property
    def named(self) -> Obj:
        return self.objects[0]

    @property
    def prompt(self) -> str:
        return TEMPLATE.format(colour=self.named.colour, shape=self.named.shape, action=self.action)

    @property
    def keywords(self) -> tuple[str, str]:
        return self.named.colour, self.named.shape

    @property
    def kind(self) -> str:
        return self.action.split()[0]           # "moves" or "turns"

    @property
    def action_word(self) -> str:
        return self.action.split()[1]           # the direction or the new colour

    @property
    def direction(self) -> str | None:
        return self.action_word if self.kind == "moves" else None

    @property
    def new_colour(self) -> str | None:
        return self.action_word if self.kind == "turns" else None

    def position(self, index: int, frame: int) -> tuple[int, int]:
        obj = self.objects[index]
        if index or self.direction is None:
            return obj.y, obj.x
        dy, dx = DIRECTIONS[self.direction]
        return obj.y + dy * STEP * frame, obj.x + dx * STEP * frame

    def pattern(self, index: int, frame: int) -> torch.Tensor:
        """The object's 16-channel pattern in a frame: a colour change blends linearly to the new colour."""
        old = PATTERNS[self.objects[index].colour]
        if index or self.new_colour is None:
            return old
        w = frame / (FRAMES - 1)
        return (1 - w) * old + w * PATTERNS[self.new_colour]


def _box(y, x, h=OBJECT, w=OBJECT, gap=1):
    return y - gap, x - gap, y + h + gap, x + w + gap


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def sample_scene(gen: torch.Generator, turn_rate: float = TURN_RATE) -> Scene:
    """One random scene; all randomness comes from ``gen``. ``turn_rate``: the share of colour
    changes (training may draw fewer; the evaluation splits always use TURN_RATE)."""
    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=gen))]

    def coord(low, high):
        return int(torch.randint(low, high + 1, (1,), generator=gen))

    count = coord(2, 3)
    colours = torch.randperm(len(COLOURS), generator=gen)[:count].tolist()
    shapes = torch.randperm(len(SHAPES), generator=gen)[:count].tolist()
    y, x = coord(TRAVEL, SIZE - OBJECT - TRAVEL), coord(TRAVEL, SIZE - OBJECT - TRAVEL)
    # every path the named object could take, so distractors do not reveal which one it takes
    taken = [_box(y - TRAVEL, x, h=OBJECT + 2 * TRAVEL, gap=0), _box(y, x - TRAVEL, w=OBJECT + 2 * TRAVEL, gap=0)]
    objects = [Obj(COLOURS[colours[0]], SHAPES[shapes[0]], y, x)]
    for i in range(1, count):
        for _ in range(200):
            oy, ox = coord(0, SIZE - OBJECT), coord(0, SIZE - OBJECT)
            if not any(_overlaps(_box(oy, ox), t) for t in taken):
                break
        else:
            break                                  # crowded: keep the objects placed so far
        taken.append(_box(oy, ox, gap=0))
        objects.append(Obj(COLOURS[colours[i]], SHAPES[shapes[i]], oy, ox))
    direction = pick(tuple(DIRECTIONS))         # drawn first: a move scene is the one this seed gave before colour changes
    if torch.rand((), generator=gen) < turn_rate:
        return Scene(tuple(objects), f"turns {pick(tuple(c for c in COLOURS if c != objects[0].colour))}")
    return Scene(tuple(objects), f"moves {direction}")


def split_seed(split: str, index: int) -> int:
    digest = hashlib.sha256(f"prompt-following/{split}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def split_scenes(split: str, count: int) -> list[Scene]:
    """The first ``count`` scenes of an evaluation split (disjoint seeds per split)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    return [sample_scene(torch.Generator().manual_seed(split_seed(split, i))) for i in range(count)]


def render(scene: Scene) -> torch.Tensor:
    """The target clip x0: [16, FRAMES, SIZE, SIZE]."""
    clip = torch.zeros(CHANNELS, FRAMES, SIZE, SIZE)
    for f in range(FRAMES):
        for i, obj in enumerate(scene.objects):
            y, x = scene.position(i, f)
            clip[:, f, y:y + OBJECT, x:x + OBJECT] += scene.pattern(i, f)[:, None, None] * SHAPE_MASKS[obj.shape]
    return clip


def reference(scene: Scene) -> torch.Tensor:
    """The I2V reference latent: frame 0 of the clip, repeated in every latent frame.

    WanImageToVideo encodes the image followed by grey frames, so a real model must carry the
    picture forward through self-attention. Repeating it makes "keep the picture" a local copy
    that a 45-minute CPU run learns, and it makes the image prior stronger, which is the failure
    Focal Guidance is meant to fix. The concat mask still marks only frame 0 as given.
    """
    return render(scene)[:, :1].expand(CHANNELS, FRAMES, SIZE, SIZE).clone()


def object_mask(scene: Scene, index: int = 0) -> torch.Tensor:
    """[SIZE, SIZE] mask of one object in the reference frame (a hand-painted anchor region)."""
    mask = torch.zeros(SIZE, SIZE)
    obj = scene.objects[index]
    mask[obj.y:obj.y + OBJECT, obj.x:obj.x + OBJECT] = SHAPE_MASKS[obj.shape]
    return mask


def colour_response(clip: torch.Tensor, colour: str) -> torch.Tensor:
    """[FRAMES, h, w]: how much of the colour's pattern each pixel holds (1.0: a drawn object's pixel)."""
    pattern = PATTERNS[colour]
    return torch.einsum("c,cfhw->fhw", pattern, clip.float()) / pattern.dot(pattern)


def locate(clip: torch.Tensor, colour: str, shape: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Best position of an object in every frame by matched filtering.

    Returns ``(positions [FRAMES, 2] long (y, x), strength [FRAMES])`` where strength is the
    match relative to a perfectly drawn object (1.0) at that position.
    """
    response = colour_response(clip, colour)
    template = SHAPE_MASKS[shape]
    match = torch.nn.functional.conv2d(response[:, None], (template / template.sum())[None, None])[:, 0]
    flat = match.flatten(1)
    strength, index = flat.max(-1)
    side = match.shape[-1]
    return torch.stack([index // side, index % side], -1), strength


def strength_at(clip: torch.Tensor, colour: str, shape: str, y: int, x: int) -> torch.Tensor:
    """[FRAMES]: how much of a perfectly drawn object (1.0) of this colour and shape sits at (y, x)."""
    response = colour_response(clip[:, :, y:y + OBJECT, x:x + OBJECT], colour)
    template = SHAPE_MASKS[shape]
    return (response * template).sum((-2, -1)) / template.sum()


PRESENT = 0.5        # strength from which an object counts as there: half of a drawn object
STRENGTH_MAX = 3.0   # above this the object is overdrawn (a blown-up clip), not drawn in a colour. Guidance
                     # overshoots a change it is asked for: the committed model at CFG 5 draws the new colour
                     # at up to 2.3 on validation (control.py), so 1.5 would call a CFG 5 colour change a failure


@dataclass(frozen=True)
class ClipScore:
    progress: float       # share of the asked action done, in [-1, 1]: moves, along / TRAVEL (negative: the wrong
                          # way); colour changes, new-colour strength. 0 when the object is missing or overdrawn,
                          # and never above 0 in a clip that moved or lost another object
    along: float          # a move's displacement along the instructed direction (target TRAVEL; 0 for colour changes)
    across: float         # a move's displacement across it (0 for colour changes, scored where the object stands)
    distractor_drift: float   # largest move of any other object (0 when there are none)
    distractors_kept: bool    # every other object still there in its own colour
    strength: float       # how clearly the named object is present in the last frame, in the colour it should have
    followed: bool        # did at least half the action, nothing else moved or changed
    exact: bool           # did the whole action (to within 1 pixel, or three quarters of the new colour)


def _in_range(strength: float) -> bool:
    return PRESENT <= strength <= STRENGTH_MAX


def score(scene: Scene, clip: torch.Tensor) -> ClipScore:
    """Score one generated clip [16, FRAMES, SIZE, SIZE] (internal latent space) against its prompt.

    Progress means what it says: a move counts only for an object that is there (strength in
    [PRESENT, STRENGTH_MAX]) and at most one TRAVEL either way; a colour change only up to a fully
    drawn new colour and not from an overdrawn one; and a clip that moved or lost another object
    earns no positive progress (a wrong-way move still counts against it).
    """
    start = scene.named
    others = clip.clone()
    if scene.new_colour is not None:   # a distractor may have the new colour: look for it elsewhere only
        others[:, :, start.y:start.y + OBJECT, start.x:start.x + OBJECT] = 0
    drift, kept = 0.0, True
    for obj in scene.objects[1:]:
        pos, _ = locate(others, obj.colour, obj.shape)
        drift = max(drift, float(max(abs(int(pos[-1, 0]) - obj.y), abs(int(pos[-1, 1]) - obj.x))))
        kept = kept and _in_range(float(strength_at(clip, obj.colour, obj.shape, obj.y, obj.x)[-1]))
    calm = drift <= 1 and kept
    if scene.direction is not None:
        dy, dx = DIRECTIONS[scene.direction]
        positions, strength = locate(clip, start.colour, start.shape)
        moved_y, moved_x = (int(positions[-1, 0]) - start.y, int(positions[-1, 1]) - start.x)
        along = moved_y * dy + moved_x * dx
        across = abs(moved_y * dx) + abs(moved_x * dy)
        present = float(strength[-1])
        there = _in_range(present)
        progress = max(-1.0, min(along / TRAVEL, 1.0)) if there else 0.0
        followed = along >= TRAVEL / 2 and across <= 1 and calm and there
        exact = abs(along - TRAVEL) <= 1 and across <= 1 and there
        return ClipScore(progress if calm else min(progress, 0.0), float(along), float(across), drift, kept,
                         present, followed, exact)
    # scored where the object stands: a distractor may share the new colour, so no search
    new = float(strength_at(clip, scene.new_colour, start.shape, start.y, start.x)[-1])
    old = float(strength_at(clip, start.colour, start.shape, start.y, start.x)[-1])
    progress = max(0.0, min(new, 1.0)) if new <= STRENGTH_MAX and calm else 0.0
    followed = _in_range(new) and old < PRESENT and calm
    exact = 0.75 <= new <= STRENGTH_MAX and old < 0.25
    return ClipScore(progress, 0.0, 0.0, drift, kept, new, followed, exact)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial rate (sound at small n and near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _student_t_cdf(x: float, df: int) -> float:
    """P(T ≤ x) for x ≥ 0 by Simpson's rule on the density (torch has no t distribution quantile)."""
    grid = torch.linspace(0.0, x, 2001, dtype=torch.float64)
    log_norm = torch.lgamma(torch.tensor((df + 1) / 2.0, dtype=torch.float64)) - torch.lgamma(
        torch.tensor(df / 2.0, dtype=torch.float64)) - 0.5 * torch.log(torch.tensor(df * torch.pi, dtype=torch.float64))
    density = torch.exp(log_norm - (df + 1) / 2 * torch.log1p(grid * grid / df))
    weights = torch.ones(2001, dtype=torch.float64)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    return 0.5 + float((density * weights).sum()) * x / 2000 / 3


def student_t_quantile(p: float, df: int) -> float:
    """The p-quantile (p ≥ 0.5) of Student's t with ``df`` degrees of freedom, by bisection."""
    low, high = 0.0, 100.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _student_t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def paired_interval(after: list[float], before: list[float]) -> tuple[float, float, float]:
    """Mean paired difference ``after − before`` and its 95% t interval: (mean, low, high).

    The same scenes and seeds in both lists, so the per-clip differences are what varies.
    """
    if len(after) != len(before) or len(after) < 2:
        raise ValueError(f"need two paired lists of at least 2 values, got {len(after)} and {len(before)}")
    diff = torch.tensor(after, dtype=torch.float64) - torch.tensor(before, dtype=torch.float64)
    n = len(diff)
    mean, sd = float(diff.mean()), float(diff.std())
    half = student_t_quantile(0.975, n - 1) * sd / n ** 0.5
    return mean, mean - half, mean + half
