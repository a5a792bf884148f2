"""adcli plot: a function (and its derivatives) over a range of one input, or over two.

The source is traced once, at a grid point; the value's program (and the gradient's, a
VJP transform beside it, or the JVP of the gradient for the second derivative) is then
evaluated at every grid point at once with the batch axis, by the same Evaluation as
`--points` (adcli/points.py): a script that branches gets a program per path, each grid
point the result of its own. No loop over the points here.

Kinks are found on the way. Every op with a kink has a kink function in its table entry
(ops.Op.kink), zero exactly at its non-smooth points; a hook of the batched evaluation
records it at every grid point. Between two neighbouring grid points a kink is crossed where
an element of it changes sign continuously (the jump of floor's x - round(x) at half
integers is no crossing: its step is far larger than its neighbours'), or where its size
has a V-shaped minimum that reaches zero (the gap of a max between its two largest
elements, which never changes sign). The one-sided slopes of the function around it say
whether the plot shows a kink or a jump. Points whose value is not finite, or whose
evaluation failed, are listed as ranges, and so are the places where a script's path
changes. The notes go below the plot (and into the legend of a file).

Drawing: uniplot on a terminal (braille and colour on a terminal, ASCII in a pipe), a heat
map of characters for two inputs; matplotlib (the `plot` extra) for PNG and SVG. Both are
imported only here, when a plot is drawn.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import AdcliError, InputError, LimitError, suggest
from .graph import as_numbers, reachable
from .points import Block, Evaluation, Program

EXTRA = "pip install 'adcli[plot]'"
MAX_GRID = 1_000_000        # grid points at most (--points N per input)
RAMP = " .:-=+*#%@"         # the heat map's levels, low to high
LABELS = ("f", "f'", "f''")


# ---------------------------------------------------------------- the range

def parse_over(texts):
    """--over x=-5:5 (may repeat, or x=-2:2,y=-1:3): [(name, lo, hi)], one or two."""
    over = []
    for text in texts or []:
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            name, eq, rng = item.partition("=")
            lo, colon, hi = rng.partition(":")
            try:
                if not (eq and colon and name.strip().isidentifier()):
                    raise ValueError
                lo, hi = _number(lo), _number(hi)
            except ValueError:
                raise InputError(f"--over {item}: give a range as NAME=LO:HI",
                                 hint="for example --over x=-5:5") from None
            if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
                raise InputError(f"--over {item}: the range needs finite LO < HI")
            over.append((name.strip(), lo, hi))
    if not over:
        raise InputError("plot needs --over NAME=LO:HI", hint="for example --over x=-5:5")
    names = [o[0] for o in over]
    if len(set(names)) != len(names):
        raise InputError(f"--over names '{names[0]}' twice" if names.count(names[0]) > 1
                         else "--over names an input twice")
    if len(over) > 2:
        raise InputError("plot draws one input (a curve) or two (a contour map), not "
                         f"{len(over)}", hint="fix the others with --at")
    return over


def _number(text):
    """A range's end: a number, or one with pi (-pi, 2*pi, pi/2)."""
    text = text.strip().replace(" ", "")
    scale = 1.0
    if "pi" in text:
        head, _, tail = text.partition("pi")
        if head in ("", "-", "+"):
            scale = -math.pi if head == "-" else math.pi
        elif head.endswith("*"):
            scale = float(head[:-1]) * math.pi
        else:
            raise ValueError(text)
        if tail.startswith("/"):
            scale /= float(tail[1:])
        elif tail:
            raise ValueError(text)
        return scale
    return float(text)


# ---------------------------------------------------------------- sampling

@dataclass
class Kink:
    """A kink (or jump) of an op found between grid points: the op, its place in the
    source, where (x, or (x, y)), whether the value jumps there, and the one-sided slopes
    (one input)."""
    op: str
    place: str
    at: tuple
    jump: bool = False
    slopes: tuple = None


@dataclass
class Sampled:
    """A function on a grid: `axes` the grid of each input (one or two), `curves` label ->
    values (f, f', f''; shape (n,) or (ny, nx)), with what was found on the way."""
    names: list
    axes: list
    curves: dict
    kinks: list = field(default_factory=list)
    nonfinite: dict = field(default_factory=dict)   # label -> bool mask of the grid
    errors: list = field(default_factory=list)      # (grid index, message) of failed points
    branches: list = field(default_factory=list)    # (a, b): the path changes between them
    paths: int = 1
    label: str = ""

    def notes(self):
        """The lines below the plot: kinks, non-finite points, failed points, paths."""
        lines = []
        groups = {}
        for k in self.kinks:
            groups.setdefault((k.op, k.place, k.jump), []).append(k)
        for (op, place, jump), ks in groups.items():
            what = f"{'jump' if jump else 'kink'} of {op} ({place})"
            if len(self.axes) == 2:       # a map: the kinks' extent, not each crossing
                at = np.array([k.at for k in ks])
                lines.append(f"{what} at {len(ks)} grid crossings, " + ", ".join(
                    f"{n} in [{_num(at[:, j].min())}, {_num(at[:, j].max())}]"
                    for j, n in enumerate(self.names)))
                continue
            where = ", ".join(_at_text(self.names, k.at) + _slopes_text(k) for k in ks[:6])
            more = f" ({len(ks)} in all)" if len(ks) > 6 else ""
            lines.append(f"{what} at {where}{more}")
        for label, mask in self.nonfinite.items():
            if mask.any():
                what = "value" if label == "f" else label
                lines.append(f"{what} not finite {self._where(mask)}")
        if self.errors:
            i, msg = self.errors[0]
            lines.append(f"{len(self.errors)} point(s) failed, the first "
                         f"{_at_text(self.names, self._point(i))}: {msg}")
        if self.branches:
            shown = "; ".join(f"{_at_text(self.names, a)} and {_at_text(self.names, b)}"
                              for a, b in self.branches[:4])
            more = f" ({len(self.branches)} places in all)" if len(self.branches) > 4 else ""
            lines.append(f"the script takes another path between {shown}{more}")
        return lines

    def _point(self, i):
        if len(self.axes) == 1:
            return (self.axes[0][i],)
        nx = len(self.axes[0])
        return (self.axes[0][i % nx], self.axes[1][i // nx])

    def _where(self, mask):
        n = mask.size
        if len(self.axes) == 1:
            xs, runs = self.axes[0], []
            idx = np.flatnonzero(mask)
            starts = idx[np.r_[True, np.diff(idx) > 1]]
            ends = idx[np.r_[np.diff(idx) > 1, True]]
            for s, e in zip(starts, ends):
                runs.append(f"at {self.names[0]} = {_num(xs[s])}" if s == e else
                            f"for {self.names[0]} in [{_num(xs[s])}, {_num(xs[e])}]")
            text = ", ".join(runs[:4]) + (f" ({len(runs)} ranges in all)" if len(runs) > 4 else "")
        else:
            iy, ix = np.nonzero(mask)
            x, y = self.axes
            text = (f"in {self.names[0]} in [{_num(x[ix.min()])}, {_num(x[ix.max()])}], "
                    f"{self.names[1]} in [{_num(y[iy.min()])}, {_num(y[iy.max()])}]")
        return f"{text} ({int(mask.sum())} of {n} points)"


def _num(v):
    v = float(v)
    return "0" if v == 0 else f"{v:.4g}"


def _at_text(names, at):
    return ", ".join(f"{n} = {_num(v)}" for n, v in zip(names, at))


def _slopes_text(k):
    if k.slopes is None or k.jump:
        return ""
    return f" (slopes {_num(k.slopes[0])} | {_num(k.slopes[1])})"


def inputs_of(text, script):
    """The inputs a source reads: a script's `input` names, an expression's free names."""
    from .parse import parse
    if script:
        from .script import declared_inputs
        return declared_inputs(parse(text, "script"))
    from .trace import CONSTANTS, free_names
    return [n for n in free_names(parse(text)) if n not in CONSTANTS]


def check_names(over, inputs, fixed):
    """Each --over name is an input of the source (an unknown one gets a suggestion)."""
    for name, _, _ in over:
        if name not in inputs:
            hint = suggest(name, inputs) or (
                "its inputs are " + ", ".join(inputs) if inputs else "it has no inputs")
            raise InputError(f"--over {name}: the source has no input '{name}'", hint=hint)
        if name in fixed:
            raise InputError(f"'{name}' is given both by --over and by --at")


def grid_sizes(over, points, to_file):
    """Grid points per input: --points N each, else 201 along one input, and for two a
    60 x 24 grid on a terminal (one character a point), 101 x 101 in a file."""
    if points is not None:
        if points < 2:
            raise InputError("--points must be 2 or more")
        sizes = [points] * len(over)
    elif len(over) == 1:
        sizes = [201]
    else:
        sizes = [101, 101] if to_file else [60, 24]
    if math.prod(sizes) > MAX_GRID:
        raise InputError(f"--points {points}: {math.prod(sizes):,} grid points, more than "
                         f"{MAX_GRID:,}")
    return sizes


def sample(trace_at, over, sizes, **options):
    """(see _sample) A plot's range meets domain edges: their NaNs and infinities are
    expected, and are noted, without numpy's warnings."""
    with np.errstate(all="ignore"):
        return _sample(trace_at, over, sizes, **options)


def _sample(trace_at, over, sizes, *, order=0, fixed=None, label=""):
    """The function (order 0), and up to its `order`-th derivative along the one input, on
    the grid of `over` [(name, lo, hi)] with `sizes` points per input: a Sampled.
    `trace_at({name: value})` traces the source at a point (points.Tracer); `fixed`, the
    other inputs' values."""
    fixed = dict(fixed or {})
    names = [o[0] for o in over]
    axes = [np.linspace(lo, hi, n) for (_, lo, hi), n in zip(over, sizes)]
    if len(axes) == 1:
        grid = {names[0]: axes[0]}
    else:   # row r is the point (x[r % nx], y[r // nx]): C order of the (ny, nx) map
        gx, gy = np.meshgrid(axes[0], axes[1])
        grid = {names[0]: gx.reshape(-1), names[1]: gy.reshape(-1)}
    rows = math.prod(sizes)
    shape = tuple(reversed(sizes))
    if order and len(names) > 1:
        raise InputError("--grad and --order plot the derivatives along one input",
                         hint="with two --over inputs the plot is the value's contour map")

    ev = Probing(trace_at, "grad" if order else "eval", names if order else None, fixed)
    parts = _start(ev, grid, rows, names if order else None)
    if parts[0].shape != ():
        raise InputError(f"plot draws a function with one number as its value; this one has "
                         f"shape {parts[0].shape}", hint="plot sum(...), or an element of it")
    block = Block(rows, grid, {}, [None] * rows)
    results, errors = ev.block(block, parts)
    curves = {"f": results[0]}
    if order >= 1:
        curves["f'"] = results[1]
    if order >= 2:
        second = Evaluation(trace_at, "hessian", names, fixed)
        second.start({n: grid[n][0] for n in names}, names)
        res2, err2 = second.block(block, second.programs[0].parts)
        curves["f''"] = res2[1]
        errors = [a or b for a, b in zip(errors, err2)]
    s = Sampled(names, axes, {k: np.asarray(v, float).reshape(shape) for k, v in curves.items()},
                label=label, paths=len(ev.programs))
    failed = np.array([e is not None for e in errors]).reshape(shape)
    s.errors = [(i, e) for i, e in enumerate(errors) if e is not None]
    for k, v in s.curves.items():
        v[failed] = np.nan
        s.nonfinite[k] = ~np.isfinite(v) & ~failed
    path = ev.path_of(rows)
    s.branches = _branch_changes(s, path.reshape(shape))
    s.kinks = _kinks(s, ev, path, shape)
    if len(axes) == 1:        # the slopes per unit of x, not per grid step
        h = axes[0][1] - axes[0][0]
        for k in s.kinks:
            if k.slopes is not None:
                k.slopes = (k.slopes[0] / h, k.slopes[1] / h)
    return s


def _start(ev, grid, rows, wrt):
    """Trace at a grid point (the first, else the middle, else the last that traces)."""
    last = None
    for r in dict.fromkeys([0, rows // 2, rows - 1]):
        try:
            return ev.start({n: v[r] for n, v in grid.items()}, wrt)
        except LimitError:
            raise
        except AdcliError as e:
            last = e
    raise last


# ---------------------------------------------------------------- kinks

class Probed(Program):
    """A Program whose batched evaluations also record, at each of its rows, every kink
    function of the ops the value depends on, and which rows it took."""

    def __init__(self, traced, kind, wrt):
        super().__init__(traced, kind, wrt)
        graph = traced.graph
        self.kink_nodes = [graph.nodes[i] for i in sorted(reachable([traced.output]))
                           if graph.nodes[i].op is not None and graph.nodes[i].op.kink is not None]
        self.kink_ids = {n.id for n in self.kink_nodes}
        self.found, self.taken, self._now = {}, [], {}
        self.hooks = (self._probe,) if self.kink_nodes else ()

    def run(self, block_values, idx):
        self._now = {}              # (what a run that fails a guard recorded is dropped)
        out = super().run(block_values, idx)
        idx = np.asarray(idx)
        self.taken.append(idx)
        for i, k in self._now.items():
            self.found.setdefault(i, []).append((idx, k))
        return out

    def _probe(self, node, args, compute):
        v = compute(args)
        if node.id in self.kink_ids:
            k = _kink_at_points(node, args, self.traced.graph.dtype)
            if k is not None:
                self._now[node.id] = k
        return v


class Probing(Evaluation):
    """The Evaluation of a plot: its programs probe kinks."""
    program_class = Probed

    def path_of(self, rows):
        """The program (path) of each row, -1 where none kept says."""
        path = np.full(rows, -1)
        for p, prog in enumerate(self.programs):
            for idx in prog.taken:
                path[idx] = p
        return path


def _kink_at_points(node, args, dtype):
    """The kink function of node's op at every point of a batched evaluation, (B, e); None
    when no argument carries the batch axis (the node does not move over the grid)."""
    flags = [np.ndim(a) == len(x.shape) + 1 for a, x in zip(args, node.args)]
    if not any(flags):
        return None
    b = next(np.shape(a)[0] for a, f in zip(args, flags) if f)
    args = as_numbers(args, dtype)
    kink, attrs = node.op.kink, node.attrs
    if node.op.broadcasts:      # align each point's array behind the batch axis
        r = len(node.shape)
        aligned = [np.reshape(a, (b,) + (1,) * (r - len(x.shape)) + tuple(x.shape)) if f else a
                   for a, f, x in zip(args, flags, node.args)]
        k = np.asarray(kink(np, *aligned, **attrs), float)
        return np.broadcast_to(k, (b,) + k.shape[1:] if k.ndim else (b,)).reshape(b, -1)
    return np.stack([np.asarray(kink(np, *[a[p] if f else a for a, f in zip(args, flags)],
                                     **attrs), float).reshape(-1) for p in range(b)])


def _lines(shape):
    """The grid's lines of neighbours: row indices along x (and, for a map, along y)."""
    idx = np.arange(math.prod(shape)).reshape(shape)
    if len(shape) == 1:
        return [idx]
    return list(idx) + list(idx.T)


def _kinks(s, ev, path, shape):
    """The kinks crossed between neighbouring grid points, as Kink entries."""
    rows = math.prod(shape)
    spans = [ax[-1] - ax[0] for ax in s.axes]
    f = s.curves["f"].reshape(-1)
    # the kink function of each op occurrence, over the grid: an op of a path is known by its
    # place in the source and its occurrence there (a loop repeats one place)
    table, ops = {}, {}
    for prog in ev.programs:
        seen = {}
        for node in prog.kink_nodes:
            if node.id not in prog.found:
                continue
            key = (node.op.name, node.pos, node.size)
            seen[key] = seen.get(key, -1) + 1
            key += (seen[key],)
            ops[key] = (node.op.name, _place(node.pos, prog.traced.filename))
            for idx, k in prog.found[node.id]:
                if k.shape[1] != (table[key].shape[1] if key in table else k.shape[1]):
                    continue
                full = table.setdefault(key, np.full((rows, k.shape[1]), np.nan))
                full[idx] = k
    found = []
    for key, K in table.items():
        for line in _lines(shape):
            same = (path[line][1:] == path[line][:-1]) & (path[line][1:] >= 0)
            for j, t in _crossings(K[line], same):
                if (j == 0 and t == 0) or j >= len(line) - 1:
                    continue      # on the range's end: seen from one side only
                a, b = line[j], line[min(j + 1, len(line) - 1)]
                at = tuple(u + (v - u) * t for u, v in zip(s._point(a), s._point(b)))
                # rounding of the interpolation: zero where it is zero to the grid's scale
                at = tuple(0.0 if abs(v) < 1e-12 * w else float(v) for v, w in zip(at, spans))
                jump, slopes = _sides(f, line, j, t)
                found.append(Kink(*ops[key], at, jump, slopes if len(shape) == 1 else None))
    # one kink met along both lines of a map, or by two occurrences: once
    unique = {}
    for k in found:
        unique.setdefault((k.op, k.place, tuple(round(v, 9) for v in k.at)), k)
    return sorted(unique.values(), key=lambda k: (k.op, k.place, k.at))


def _place(pos, filename):
    if pos is None:
        return filename or "the expression"
    return f"{filename}, line {pos[0]}" if filename else f"column {pos[1]}"


def _crossings(K, ok):
    """Where the kink function K (L points along a line, e elements each) is crossed:
    [(j, t)], between point j and j + 1 at the fraction t (t = 0: on point j). `ok[j]`:
    points j and j + 1 lie on one path, with values."""
    L = len(K)
    valid = ~np.isnan(K).any(axis=1)
    ok = ok & valid[1:] & valid[:-1]
    out = []
    zero = valid & (K == 0).any(axis=1)
    out += [(j, 0.0) for j in np.flatnonzero(zero)]
    s = np.sign(K)
    d = np.abs(np.diff(K, axis=0))
    flips = (s[:-1] * s[1:] < 0) & ok[:, None] & ~zero[:-1, None] & ~zero[1:, None]
    for j in np.flatnonzero(flips.any(axis=1)):
        e = np.flatnonzero(flips[j])
        near = [d[m] for m in (j - 1, j + 1) if 0 <= m < L - 1 and ok[m]]
        if near:   # continuous: a step not far above its neighbours' (no jump of K itself)
            e = e[(d[j] <= 4 * np.maximum.reduce(near) + 1e-300)[e]]
        if e.size:
            a, b = K[j, e[0]], K[j + 1, e[0]]
            out.append((j, float(a / (a - b))))
    if L >= 5:
        # a V-shaped minimum of |K| that reaches zero between grid points: the lines through
        # the two points on either side meet at (about) zero
        A = np.abs(K)
        al, aj, ar = A[1:-3], A[2:-2], A[3:-1]
        sl, sr = al - A[:-4], A[4:] - ar
        no_flip = ~(flips[1:-2] | flips[2:-1]) & ~zero[2:-2, None]
        span = ok[:-3] & ok[1:-2] & ok[2:-1] & ok[3:]
        v_like = (sl < 0) & (sr > 0) & (aj <= al) & (aj <= ar) & no_flip & span[:, None]
        with np.errstate(all="ignore"):
            t = (ar - sr - al - sl) / (sl - sr)          # where the lines meet, from point j
            v = al + sl * (t + 1)
        hit = v_like & (v <= 0.1 * np.minimum(al, ar))
        for j0 in np.flatnonzero(hit.any(axis=1)):
            e = np.flatnonzero(hit[j0])[0]
            tt = float(np.clip(t[j0, e], -1, 1))
            j = j0 + 2
            out.append((j - 1, 1 + tt) if tt < 0 else (j, tt))
    return out


def _sides(f, line, j, t):
    """(whether f jumps at the crossing, the one-sided slopes) from the grid values around
    it: the steps just outside the interval of the crossing."""
    L = len(line)
    lo, hi = (j - 1, j + 1) if t == 0 else (j, j + 1)
    if lo < 0 or hi >= L:
        return False, None
    fl, fh = f[line[lo]], f[line[hi]]
    left = (f[line[lo]] - f[line[lo - 1]]) if lo >= 1 else None
    right = (f[line[hi + 1]] - f[line[hi]]) if hi + 1 < L else None
    steps = [abs(x) for x in (left, right) if x is not None and np.isfinite(x)]
    jump = bool(steps) and abs(fh - fl) > 4 * (hi - lo) * max(steps) + 1e-12 * (abs(fl) + abs(fh))
    if left is None or right is None:
        return jump, None
    return jump, (float(left), float(right))


def _branch_changes(s, path):
    """(point a, point b) where neighbouring grid points take different paths."""
    out = []
    flat = path.reshape(-1)
    for line in _lines(path.shape):
        p = flat[line]
        for j in np.flatnonzero((p[1:] != p[:-1]) & (p[1:] >= 0) & (p[:-1] >= 0)):
            out.append((s._point(line[j]), s._point(line[j + 1])))
    return out


# ---------------------------------------------------------------- drawing

def _uniplot():
    try:
        import uniplot
    except ImportError:
        raise InputError("plotting in the terminal needs uniplot, which is not installed",
                         hint=EXTRA) from None
    return uniplot


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise InputError("writing a PNG or SVG plot needs matplotlib, which is not installed",
                         hint=EXTRA) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def terminal(s, width=60, height=17, color=False, path=None):
    """The plot as text: uniplot's curves for one input, a heat map for two; the notes
    below. `path`: points (k, inputs) drawn on it (a minimizer's steps)."""
    if len(s.axes) == 2:
        text = _heat_map(s, path)
    else:
        up = _uniplot()
        xs = s.axes[0]
        ys, xss, labels = [], [], []
        for label, v in s.curves.items():
            ys.append(np.where(np.isfinite(v), v, np.nan))
            xss.append(xs)
            labels.append(_legend(label, s.label))
        lines = [True] * len(ys)
        if path is not None and len(path):
            px = np.asarray(path, float).reshape(len(path), -1)[:, 0]
            ys.append(np.interp(px, xs, np.nan_to_num(s.curves["f"])))
            xss.append(px)
            labels.append("path")
            lines.append(True)
        kinks = s.kinks
        if kinks:
            kx = np.array([k.at[0] for k in kinks])
            ys.append(np.interp(kx, xs, _fill(s.curves["f"])))
            xss.append(kx)
            labels.append("kink" if not all(k.jump for k in kinks) else "jump")
            lines.append(False)
        finite = np.concatenate([y[np.isfinite(y)] for y in ys] + [np.zeros(0)])
        if not finite.size:
            raise InputError("nothing to plot: the function is not finite anywhere on the range")
        lo, hi = float(finite.min()), float(finite.max())
        if lo == hi:
            lo, hi = lo - 1, hi + 1
        text = up.plot_to_string(ys, xss, lines=lines, legend_labels=labels, width=width,
                                 height=height, color=color,
                                 character_set="braille" if color else "ascii",
                                 y_min=lo, y_max=hi, x_min=float(xs[0]), x_max=float(xs[-1]),
                                 title=f"{s.label} over {s.names[0]}")
    notes = s.notes()
    return text.rstrip("\n") + "\n" + "".join(n + "\n" for n in notes)


def _fill(v):
    """Values to place markers on: the non-finite ones as their nearest finite neighbour's."""
    v = np.asarray(v, float)
    ok = np.isfinite(v)
    if not ok.any():
        return np.zeros_like(v)
    idx = np.arange(v.size)
    return np.interp(idx, idx[ok], v[ok])


def _legend(label, expr):
    return {"f": expr if len(expr) <= 30 else "f", "f'": "f'", "f''": "f''"}[label]


def _heat_map(s, path=None):
    """Two inputs on a terminal: one character a grid point, darker for larger values (the
    ramp below); x a kink crossed there, ! not finite, o the path."""
    z = s.curves["f"]
    ok = np.isfinite(z)
    if not ok.any():
        raise InputError("nothing to plot: the function is not finite anywhere on the range")
    lo, hi = float(z[ok].min()), float(z[ok].max())
    scaled = np.where(ok, (z - lo) / ((hi - lo) or 1.0), 0.0)
    # (a value on a level's boundary, up to rounding, takes the upper level: symmetric maps
    # stay symmetric)
    level = np.clip(np.floor(scaled * len(RAMP) + 1e-9).astype(int), 0, len(RAMP) - 1)
    cells = np.array(list(RAMP))[level]
    cells[~ok] = "!"
    x, y = s.axes
    for k in s.kinks:
        cells[_nearest(y, k.at[1]), _nearest(x, k.at[0])] = "x"
    if path is not None:
        for p in np.asarray(path, float).reshape(len(path), -1):
            if x[0] <= p[0] <= x[-1] and y[0] <= p[1] <= y[-1]:
                cells[_nearest(y, p[1]), _nearest(x, p[0])] = "o"
    top, bottom = f"{_num(y[-1])}", f"{_num(y[0])}"
    pad = max(len(top), len(bottom), len(s.names[1]))
    out = [f"{s.label} over {s.names[0]} (across), {s.names[1]} (up)"]
    out.append(" " * pad + " ┌" + "─" * len(x) + "┐")
    for i in range(len(y) - 1, -1, -1):
        tag = top if i == len(y) - 1 else bottom if i == 0 else (
            s.names[1] if i == len(y) // 2 else "")
        out.append(f"{tag:>{pad}} │" + "".join(cells[i]) + "│")
    out.append(" " * pad + " └" + "─" * len(x) + "┘")
    left, right = _num(x[0]), _num(x[-1])
    gap = max(1, len(x) + 2 - len(left) - len(right))
    out.append(" " * (pad + 1) + left + " " * gap + right)
    out.append(" " * (pad + 1) + s.names[0].center(len(x) + 2))
    out.append(f"levels: '{RAMP[0]}' {_num(lo)} ... '{RAMP[-1]}' {_num(hi)} ({RAMP!r} low to "
               "high); x kink, ! not finite" + (", o path" if path is not None else ""))
    return "\n".join(out)


def _nearest(axis, v):
    return int(np.clip(np.rint((v - axis[0]) / (axis[1] - axis[0])), 0, len(axis) - 1))


def figure(s, out, path=None, size=(6.4, 4.8), dpi=100):
    """Write the plot to `out` (.png or .svg, through files.writing: whole or not at all)."""
    from .files import writing
    fmt = file_format(out)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    try:
        notes = s.notes()
        if len(s.axes) == 1:
            xs = s.axes[0]
            for label, v in s.curves.items():
                ax.plot(xs, np.where(np.isfinite(v), v, np.nan), label=_legend(label, s.label))
            if s.kinks:
                kx = np.array([k.at[0] for k in s.kinks])
                ax.plot(kx, np.interp(kx, xs, _fill(s.curves["f"])), "rx", markersize=8,
                        label="kink" if not all(k.jump for k in s.kinks) else "jump")
            bad = s.nonfinite["f"] | np.isnan(s.curves["f"])
            if bad.any():
                h = xs[1] - xs[0]
                for i in np.flatnonzero(bad):
                    ax.axvspan(xs[i] - h / 2, xs[i] + h / 2, color="0.85", lw=0)
                ax.plot([], [], color="0.85", lw=6, label="not finite")
            if path is not None and len(path):
                px = np.asarray(path, float).reshape(len(path), -1)[:, 0]
                ax.plot(px, np.interp(px, xs, _fill(s.curves["f"])), "o-", color="k",
                        markersize=3, label="path")
            ax.set_xlabel(s.names[0])
            ax.axhline(0, color="0.6", lw=0.5)
            ax.legend(loc="best", fontsize="small")
        else:
            x, y = s.axes
            z = np.ma.masked_invalid(s.curves["f"])
            cs = ax.contourf(x, y, z, levels=20)
            fig.colorbar(cs, ax=ax, label=s.label)
            ax.contour(x, y, z, levels=10, colors="k", linewidths=0.4)
            if s.kinks:
                ax.plot([k.at[0] for k in s.kinks], [k.at[1] for k in s.kinks], "r.",
                        markersize=2, label="kink")
            if path is not None and len(path):
                p = np.asarray(path, float).reshape(len(path), -1)
                ax.plot(p[:, 0], p[:, 1], "o-", color="w", markersize=3, label="path")
            if s.kinks or path is not None:
                ax.legend(loc="best", fontsize="small")
            ax.set_xlabel(s.names[0])
            ax.set_ylabel(s.names[1])
        ax.set_title(s.label)
        if notes:
            fig.text(0.01, 0.01, "\n".join(notes[:4]), fontsize="x-small", va="bottom")
            fig.subplots_adjust(bottom=0.1 + 0.035 * min(len(notes), 4))
        with writing(out, "wb") as f:
            fig.savefig(f, format=fmt, dpi=dpi)
    finally:
        plt.close(fig)
    return notes


def file_format(out):
    ext = out.rsplit(".", 1)[-1].lower() if "." in out else ""
    if ext not in ("png", "svg"):
        raise InputError(f"-o {out}: a plot is written to .png or .svg")
    return ext


# ---------------------------------------------------------------- entry points

def run(expr, at, over, *, points=None, order=0, out=None, width=60, height=17, color=False,
        dtype="float64", limits=None, seed=0, max_steps=1_000_000, max_depth=64):
    """adcli plot EXPR|FILE --over ...: read the source and --at, check the names, plot."""
    from . import api, sources
    from .points import Tracer
    over = parse_over(over)
    dtype_np = np.dtype(api.check_dtype(dtype))
    source = sources.read(expr, at, dtype_np.type, limits, seed)
    inputs = inputs_of(source.text, source.script)
    check_names(over, inputs, source.values)
    missing = [n for n in inputs if n not in source.values and n not in dict(
        (o[0], o) for o in over)]
    if missing and not source.script:
        raise InputError("no value for " + ", ".join(f"'{n}'" for n in missing),
                         hint="plot it with --over, or fix it with --at")
    trace_at = Tracer(source.text, source.script, source.filename, dtype, limits, seed,
                      max_steps, max_depth)
    return plot(trace_at, over, points=points, order=order, fixed=source.values, out=out,
                label=source.filename or source.text, width=width, height=height, color=color)


def plot(trace_at, over, *, points=None, order=0, fixed=None, out=None, label="", width=60,
         height=17, color=False):
    """adcli plot: the text for stdout (the terminal plot with its notes, or with `out`
    only the notes, once the file is written)."""
    if out is not None:
        file_format(out)
    sizes = grid_sizes(over, points, out is not None)
    s = sample(trace_at, over, sizes, order=order, fixed=fixed, label=label)
    if out is not None:
        return "".join(n + "\n" for n in figure(s, out))
    return terminal(s, width, height, color)


def path_plot(trace_at, names, path, *, over=None, fixed=None, out=None, label="",
              points=None, width=60, height=17, color=False):
    """A minimizer's path drawn on its function (for `minimize --plot`): `names` the one or
    two inputs moved, `path` their values at each step, shape (steps, len(names));
    `over` the range [(name, lo, hi)] (default: the path's extent, widened by a fifth on
    each side). The terminal text, or with `out` (.png or .svg) the file written and the
    notes returned."""
    path = np.asarray(path, float).reshape(len(path), len(names))
    if over is None:
        over = []
        for j, n in enumerate(names):
            lo, hi = float(path[:, j].min()), float(path[:, j].max())
            pad = 0.2 * (hi - lo) or 1.0
            over.append((n, lo - pad, hi + pad))
    sizes = grid_sizes(over, points, out is not None)
    s = sample(trace_at, over, sizes, fixed=fixed, label=label)
    if out is not None:
        file_format(out)
        return "".join(n + "\n" for n in figure(s, out, path=path))
    return terminal(s, width, height, color, path=path)
