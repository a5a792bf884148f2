"""adcli minimize: follow the derivative downhill from a starting point.

The source is traced once, at the start. The value and the gradient (the VJP transform,
recorded as a program: Traced.gradient_program) are then evaluated at every new point by
the evaluator, without parsing or tracing again; so are Hessian-vector products, the JVP
transform of the gradient program along a tangent placeholder (forward over reverse), for
newton and trust. A script whose branch goes another way at a new point (the evaluator
raises GuardFailed) is traced again there, and that trace's programs are used from then on.

The inputs minimised over are one flat vector x (each input's elements in C order, the
inputs in order); the others keep their --at values.

Methods. Built in: gd (x -= lr g), momentum (heavy ball: v = 0.9 v + g, x -= lr v), adam
(Kingma & Ba: bias-corrected moments, 0.9 and 0.999, eps 1e-8), newton (the exact Hessian
for up to DENSE_NEWTON elements, its negative eigenvalues turned positive; above that,
truncated conjugate gradients on Hessian-vector products; either way a backtracking
line search, so that a step never raises the value). With SciPy: lbfgs (L-BFGS-B, which
takes bounds) and trust (trust-krylov, with adcli's Hessian-vector products), both with
adcli's exact gradient.

Bounds (lower, upper per input, for every element) are kept by gd, momentum and adam by
projecting each step back into the box, and by lbfgs itself; with bounds the gradient
norm that decides convergence is that of the projected gradient, in which a component
pushing against an active bound counts 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import AdcliError, InputError, ValueError_, note, suggest

METHODS = ("gd", "momentum", "adam", "newton", "lbfgs", "trust")
LR = {"gd": 0.01, "momentum": 0.01, "adam": 0.001}        # the defaults of --lr
MOMENTUM = 0.9
BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
STEPS, TOL, XTOL = 1000, 1e-6, 1e-10
DENSE_NEWTON = 500        # newton forms the Hessian for at most this many input elements
BOUNDED = ("gd", "momentum", "adam", "lbfgs")
SCIPY = {"lbfgs": "L-BFGS-B", "trust": "trust-krylov"}
ARMIJO = 1e-4             # sufficient decrease: f(x + a d) <= f(x) + ARMIJO a g.d
HALVINGS = 40             # of the line search's step before it gives up


@dataclass
class Outcome:
    """What a minimisation found: the point (name -> array), the value and the gradient
    norm there, the steps taken and why it stopped (reason: gradient, step, steps,
    nonfinite, line-search or scipy; converged for gradient and step)."""
    label: str
    method: str
    x: dict
    value: float
    grad_norm: float
    steps: int
    reason: str
    message: str
    converged: bool
    evaluations: int = 0
    retraces: int = 0
    history: list = None              # (step, value, grad_norm, flat x) for every step
    check: object = None              # a gradcheck Report at the optimum (--check)
    notes: list = field(default_factory=list)


class Objective:
    """The traced source as a function of the flat vector x of the inputs minimised over:
    value, gradient and Hessian-vector products, from programs of one trace."""

    def __init__(self, trace_at, values, wrt=None):
        from .api import choose_inputs, scalar_output
        self.trace_at, self.values = trace_at, dict(values)
        traced = trace_at(self.values)
        if not traced.inputs:
            raise InputError("there is nothing to minimise over: the expression has no inputs")
        self.names, nodes = choose_inputs(traced, wrt)
        scalar_output(traced, "minimize")
        self.shapes = [tuple(n.shape) for n in nodes]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.n = sum(self.sizes)
        self.start = np.concatenate([np.asarray(n.value, dtype=np.float64).reshape(-1)
                                     for n in nodes] or [np.zeros(0)])
        self.first_value = np.asarray(traced.output.value)
        self.evaluations = self.retraces = 0
        self._use(traced)

    def _use(self, traced):
        self.traced = traced
        self.nodes = [traced.inputs[n] for n in self.names]
        self.grads = traced.gradient_program(self.names)
        self._hvp = None

    def split(self, x):
        """x as {name: array of the input's shape}."""
        out, at = {}, 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            out[name] = np.asarray(x[at:at + size], dtype=np.float64).reshape(shape)
            at += size
        return out

    def _inputs(self, x):
        graph = self.traced.graph
        return {node: graph.xp.asarray(v, dtype=graph.dtype)
                for node, v in zip(self.nodes, self.split(x).values())}

    def _retrace(self, x):
        """Trace the source again at x (a guard failed there). Giving a script input that
        has a default skips the default's random draws, which would change the function:
        that is refused, with the remedy."""
        defaulted = [n for n in self.names if n not in self.values]
        if defaulted and self.retraces == 0:
            again = self.trace_at({**self.values, **self.split(self.start)})
            if not np.array_equal(np.asarray(again.output.value), self.first_value):
                raise InputError(
                    "the script takes another branch at a new point, and tracing it again "
                    "there with " + ", ".join(defaulted) + " given would change its random "
                    "draws", hint="give " + ", ".join(defaulted) + " with --at")
        self.retraces += 1
        self._use(self.trace_at({**self.values, **self.split(x)}))

    def _evaluate(self, x, outputs, more=None, batch=None, batched=()):
        """evaluate(outputs(), ...) at x; a failed guard traces again and repeats it."""
        from .evaluate import GuardFailed, evaluate
        for attempt in (0, 1):
            nodes = outputs()
            try:
                given = self._inputs(x)
                given.update(more() if more else {})
                self.evaluations += 1
                return nodes, evaluate(self.traced.graph, [n for n in nodes if n is not None],
                                       given, batch=batch, batched=batched)
            except GuardFailed:
                if attempt:
                    raise
                self._retrace(x)

    def value(self, x):
        (out,), vals = self._evaluate(x, lambda: [self.traced.output])
        return float(np.asarray(vals[out.id]).reshape(()))

    def value_grad(self, x):
        """(value, flat gradient) at x; an input the value does not reach has gradient 0."""
        nodes, vals = self._evaluate(x, lambda: [self.traced.output] + self.grads)
        g = [np.zeros(s) if node is None else
             np.broadcast_to(np.asarray(vals[node.id], dtype=np.float64), shape).reshape(-1)
             for node, shape, s in zip(nodes[1:], self.shapes, self.sizes)]
        return float(np.asarray(vals[nodes[0].id]).reshape(())), np.concatenate(g or [[]])

    def _hvp_program(self):
        """H v as a program: the JVP transform of the gradient program along one tangent
        placeholder per input, recorded once per trace."""
        if self._hvp is None:
            from . import autodiff
            graph = self.traced.graph
            tangents = [graph.placeholder(f"a tangent of {n}", s, graph.dtype)
                        for n, s in zip(self.names, self.shapes)]
            present = [g for g in self.grads if g is not None]
            try:
                found = iter(autodiff.jvp(graph, present, self.nodes, tangents,
                                          create_graph=True) if present else [])
            except AdcliError as e:
                raise e.located(self.traced.source, self.traced.filename)
            self._hvp = (tangents, [next(found) if g is not None else None for g in self.grads])
        return self._hvp

    def hessian_vectors(self, x, vectors):
        """H v for each row v of `vectors` (k, n), one batched evaluation: (k, n)."""
        from .evaluate import at_points
        vectors = np.atleast_2d(vectors)
        k = vectors.shape[0]

        def tangents():
            ts, at = {}, 0
            for t, shape, size in zip(self._hvp_program()[0], self.shapes, self.sizes):
                ts[t] = self.traced.graph.xp.asarray(
                    vectors[:, at:at + size].reshape((k,) + shape), dtype=self.traced.graph.dtype)
                at += size
            return ts
        nodes, vals = self._evaluate(x, lambda: self._hvp_program()[1], tangents, batch=k,
                                     batched=self._hvp_program()[0])
        cols = [np.zeros((k, s)) if node is None else
                np.asarray(at_points(np, vals[node.id], k, shape), dtype=np.float64).reshape(k, -1)
                for node, shape, s in zip(nodes, self.shapes, self.sizes)]
        return np.concatenate(cols, axis=1) if cols else np.zeros((k, 0))

    def hessian(self, x):
        """The n x n Hessian at x: H times the identity, in chunks of basis vectors (so that
        the batched evaluation's arrays stay within derivatives.BATCH_ELEMENTS)."""
        from .derivatives import BATCH_ELEMENTS
        from .graph import dependents
        graph = self.traced.graph
        # the nodes that depend on a tangent carry the batch axis
        ids = [t.id for t in self._hvp_program()[0]]
        widest = max([1] + [graph.nodes[i].size for i in dependents(graph, ids)])
        step = max(1, min(self.n, BATCH_ELEMENTS // widest))
        eye = np.eye(self.n)
        H = np.concatenate([self.hessian_vectors(x, eye[i:i + step])
                            for i in range(0, self.n, step)], axis=0)
        return (H + H.T) / 2      # exact up to rounding; symmetric for Cholesky


# ---------------------------------------------------------------- options

def parse_bounds(specs, names, shapes):
    """--bounds NAME=LO:HI (repeatable, or comma-separated; either side may be empty for
    no bound) as flat arrays (lower, upper) over x, or None without bounds."""
    if not specs:
        return None
    given = {}
    for spec in ",".join(specs).split(","):
        spec = spec.strip()
        if not spec:
            continue
        name, eq, rng = spec.partition("=")
        name = name.strip()
        lo, colon, hi = rng.partition(":")
        if not eq or not colon:
            raise InputError(f"--bounds '{spec}': write NAME=LOWER:UPPER, for example x=0:1",
                             hint="leave a side empty for no bound: x=0: or x=:1")
        if name not in names:
            raise InputError(f"--bounds {name}: '{name}' is not an input minimised over",
                             hint=suggest(name, names) or "the inputs minimised over are "
                             + ", ".join(names))
        if name in given:
            raise InputError(f"--bounds {name}: bounds given twice")
        try:
            low = float(lo) if lo.strip() else -math.inf
            high = float(hi) if hi.strip() else math.inf
        except ValueError:
            raise InputError(f"--bounds '{spec}': the bounds must be numbers") from None
        if math.isnan(low) or math.isnan(high) or low > high:
            raise InputError(f"--bounds '{spec}': the lower bound must not exceed the upper")
        given[name] = (low, high)
    lower = np.concatenate([np.full(math.prod(s), given.get(n, (-math.inf,))[0])
                            for n, s in zip(names, shapes)])
    upper = np.concatenate([np.full(math.prod(s), given.get(n, (0, math.inf))[1])
                            for n, s in zip(names, shapes)])
    return lower, upper


def _projected_norm(x, g, bounds):
    """|g|, or with bounds that of the projected gradient: a component at a bound that
    would carry x out of the box (descent goes along -g) counts 0."""
    if bounds is not None:
        lower, upper = bounds
        g = np.where(((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0)), 0.0, g)
    return _norm(g)


def _norm(v):
    """The 2-norm, scaled by the largest element first, so that it overflows only where
    the norm itself would (np.linalg.norm squares the elements: 1e200 gives inf)."""
    m = float(np.max(np.abs(v))) if v.size else 0.0
    if m == 0 or not math.isfinite(m):
        return m
    return m * float(np.linalg.norm(v / m))


def _finite(f, g):
    return math.isfinite(f) and bool(np.all(np.isfinite(g)))


# ---------------------------------------------------------------- the entry point

def minimize(trace_at, values, *, label, wrt=None, method="gd", lr=None, steps=STEPS, tol=TOL,
             xtol=XTOL, bounds=None, history=False, on_step=None):
    """Minimise the traced source from its --at point. trace_at(values) traces it (at
    {name: array}); `values` are the --at values, the start. on_step(step, value,
    grad_norm, x) is called at the start (step 0) and after every step, x {name: array}.
    Returns an Outcome (history: every step's record, if asked)."""
    if method not in METHODS:
        raise InputError(f"unknown --method '{method}'",
                         hint=suggest(method, METHODS) or "use " + ", ".join(METHODS))
    if lr is not None and method not in LR:
        raise InputError(f"--lr sets the step of gd, momentum and adam; {method} chooses its "
                         "own steps", hint="leave out --lr")
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise InputError(f"--lr {lr}: the learning rate must be a positive number")
    if steps < 0:
        raise InputError(f"--steps {steps}: the number of steps must be 0 or more")
    for option, v in (("--tol", tol), ("--xtol", xtol)):
        if not (v >= 0 and math.isfinite(v)):
            raise InputError(f"{option} {v}: a tolerance is a number 0 or more")
    if bounds and method not in BOUNDED:
        raise InputError(f"--method {method} does not take --bounds",
                         hint="use " + ", ".join(BOUNDED))
    if method in SCIPY:
        _import_scipy(method)
    objective = Objective(trace_at, values, wrt)
    box = parse_bounds(bounds, objective.names, objective.shapes)
    x = objective.start.copy()
    if box is not None and np.any((x < box[0]) | (x > box[1])):
        raise InputError("the starting point lies outside --bounds",
                         hint="give a start inside the bounds with --at")
    records = [] if history else None

    def record(k, x, f, gn):
        if records is not None:
            records.append((k, f, gn, x.copy()))
        if on_step is not None:
            on_step(k, f, gn, objective.split(x))

    f, g = objective.value_grad(x)
    if not _finite(f, g):
        raise ValueError_("the value or its gradient is not finite at the starting point",
                          hint="start elsewhere with --at")
    record(0, x, f, _projected_norm(x, g, box))
    if method in SCIPY:
        x, f, g, k, reason, message = _scipy(objective, method, x, f, g, steps, tol, box, record)
    else:
        step = {"gd": _gd, "momentum": _momentum, "adam": _adam, "newton": _newton}[method]
        x, f, g, k, reason, message = _iterate(objective, step(lr or LR.get(method)), x, f, g,
                                               steps, tol, xtol, box, record)
    gn = _projected_norm(x, g, box)
    return Outcome(label, method, objective.split(x), f, gn, k, reason, message,
                   reason in ("gradient", "step"), objective.evaluations, objective.retraces,
                   records)


def _iterate(objective, step, x, f, g, steps, tol, xtol, box, record):
    """The built-in methods' loop: step(objective, x, f, g, k) proposes the next point (or
    None: no step lowers the value); stop on a small gradient, a small step, a value that
    is not finite, or after `steps` steps. Returns (x, f, g, steps taken, reason, message)."""
    for k in range(1, steps + 1):
        gn = _projected_norm(x, g, box)
        if gn <= tol:
            return x, f, g, k - 1, "gradient", _small_gradient(gn, tol)
        new = step(objective, x, f, g, k)
        if new is None:
            return x, f, g, k - 1, "line-search", (
                "no step along the Newton direction lowers the value (the line search "
                f"failed); the gradient norm is {gn:.3g}, above --tol {tol:g}")
        if box is not None:
            new = np.clip(new, box[0], box[1])       # projected onto the box
        f_new, g_new = objective.value_grad(new)
        if not _finite(f_new, g_new):
            what = "value" if not math.isfinite(f_new) else "gradient"
            return x, f, g, k - 1, "nonfinite", (
                f"the {what} is not finite after step {k}: the step went too far (try a "
                f"smaller --lr); the minimum shown is the last point where it was finite")
        moved = _norm(new - x)
        x, f, g = new, f_new, g_new
        record(k, x, f, _projected_norm(x, g, box))
        if moved <= xtol * (1 + _norm(x)):
            return x, f, g, k, "step", f"the step {moved:.3g} is below --xtol {xtol:g} (relative)"
    gn = _projected_norm(x, g, box)
    if gn <= tol:
        return x, f, g, steps, "gradient", _small_gradient(gn, tol)
    return x, f, g, steps, "steps", (f"--steps {steps} reached; the gradient norm {gn:.3g} is "
                                     f"above --tol {tol:g}")


def _small_gradient(gn, tol):
    return f"the gradient norm {gn:.3g} is below --tol {tol:g}"


def _gd(lr):
    return lambda objective, x, f, g, k: x - lr * g


def _momentum(lr):
    v = None

    def step(objective, x, f, g, k):
        nonlocal v
        v = g if v is None else MOMENTUM * v + g
        return x - lr * v
    return step


def _adam(lr):
    m = v = None

    def step(objective, x, f, g, k):
        nonlocal m, v
        m = (1 - BETA1) * g if m is None else BETA1 * m + (1 - BETA1) * g
        v = (1 - BETA2) * g * g if v is None else BETA2 * v + (1 - BETA2) * g * g
        m_hat, v_hat = m / (1 - BETA1 ** k), v / (1 - BETA2 ** k)
        return x - lr * m_hat / (np.sqrt(v_hat) + ADAM_EPS)
    return step


def _newton(_lr):
    def step(objective, x, f, g, k):
        if objective.n <= DENSE_NEWTON:
            d = _damped_newton_direction(objective.hessian(x), g)
        else:
            d = _truncated_cg(lambda v: objective.hessian_vectors(x, v)[0], g)
        return _line_search(objective, x, f, g, d)
    return step


def _damped_newton_direction(H, g):
    """The Newton direction -H^-1 g with H's eigenvalues replaced by their absolute values
    (at least 1e-8 of the largest): the Newton step itself where H is positive definite;
    where it is not, a step that goes downhill along directions of negative curvature
    instead of up (Nocedal & Wright 3.4; the "saddle-free" Newton of Dauphin et al.)."""
    eigenvalues, Q = np.linalg.eigh(H)
    size = np.abs(eigenvalues)
    floor = max(1e-8 * (float(size.max()) if size.size else 0.0), 1e-300)
    return -Q @ ((Q.T @ g) / np.maximum(size, floor))


def _truncated_cg(hvp, g, max_iter=250):
    """An approximate solution of H d = -g by conjugate gradients (Nocedal & Wright's
    Newton-CG): stop once the residual is below min(0.5, sqrt|g|) |g|, or on a direction
    of negative curvature (then the iterate so far, or -g on the first)."""
    d, r = np.zeros_like(g), g.copy()
    p = -r
    eps = min(0.5, math.sqrt(np.linalg.norm(g))) * np.linalg.norm(g)
    for _ in range(min(max_iter, len(g))):
        Hp = hvp(p)
        curvature = float(p @ Hp)
        if curvature <= 0:
            return -g if not d.any() else d
        alpha = float(r @ r) / curvature
        d = d + alpha * p
        r_new = r + alpha * Hp
        if np.linalg.norm(r_new) < eps:
            return d
        p = -r_new + float(r_new @ r_new) / float(r @ r) * p
        r = r_new
    return d


def _line_search(objective, x, f, g, d):
    """Backtracking from the full step until the value falls enough (Armijo); None if no
    step of HALVINGS halvings does."""
    slope = float(g @ d)
    if slope >= 0:          # not downhill (rounding in a nearly singular system): use -g
        d, slope = -g, -float(g @ g)
    a = 1.0
    for _ in range(HALVINGS):
        trial = x + a * d
        ft = objective.value(trial)
        if math.isfinite(ft) and ft <= f + ARMIJO * a * slope:
            return trial
        a /= 2
    return None


# ---------------------------------------------------------------- scipy

def _import_scipy(method):
    try:
        import scipy.optimize as optimize
    except ImportError:
        raise InputError(f"--method {method} needs SciPy, which is not installed",
                         hint="pip install 'adcli[special]', or use gd, momentum, adam or "
                              "newton") from None
    return optimize


def _scipy(objective, method, x, f, g, steps, tol, box, record):
    """lbfgs (L-BFGS-B) or trust (trust-krylov) by scipy.optimize, with adcli's exact
    gradient (and Hessian-vector products); each iteration is recorded."""
    optimize = _import_scipy(method)
    last = {"x": x.copy(), "f": f, "g": g}
    count = [0]

    def fun(x):
        fx, gx = objective.value_grad(x)
        last.update(x=np.array(x), f=fx, g=gx)
        return fx, gx

    def callback(xk):
        if not np.array_equal(xk, last["x"]):
            fun(xk)
        count[0] += 1
        record(count[0], last["x"], last["f"], _projected_norm(last["x"], last["g"], box))

    options = {"maxiter": steps, "gtol": tol}
    kwargs = {}
    if method == "lbfgs":
        options.update(ftol=0.0, maxfun=max(15000, 20 * steps))
        if box is not None:
            kwargs["bounds"] = optimize.Bounds(box[0], box[1])
    else:
        kwargs["hessp"] = lambda x, v: objective.hessian_vectors(x, v)[0]
    if steps == 0:
        return x, f, g, 0, "steps", f"--steps 0 reached; the gradient norm is {np.linalg.norm(g):.3g}"
    res = optimize.minimize(fun, x, jac=True, method=SCIPY[method], callback=callback,
                            options=options, **kwargs)
    xs = np.asarray(res.x, dtype=np.float64)
    if not np.array_equal(xs, last["x"]):
        fun(xs)
    f, g = last["f"], last["g"]
    gn = _projected_norm(xs, g, box)
    said = str(res.message.decode() if isinstance(res.message, bytes) else res.message)
    if not _finite(f, g):
        return xs, f, g, count[0], "nonfinite", f"the value is not finite where scipy stopped ({said})"
    if gn <= tol:
        return xs, f, g, count[0], "gradient", _small_gradient(gn, tol)
    if count[0] >= steps:
        return xs, f, g, count[0], "steps", (f"--steps {steps} reached; the gradient norm "
                                             f"{gn:.3g} is above --tol {tol:g}")
    return xs, f, g, count[0], "scipy", (f"scipy stopped: {said}; the gradient norm {gn:.3g} "
                                         f"is above --tol {tol:g}")


# ---------------------------------------------------------------- gradcheck at the optimum

def check_at(outcome, source, *, dtype, limits, seed, max_steps, max_depth):
    """gradcheck (adcli.check) at the point found: its Report."""
    from . import check
    values = {**source.values, **{n: np.asarray(v, dtype=np.float64)
                                  for n, v in outcome.x.items()}}
    return check.check(source.text, values, script=source.script, filename=source.filename,
                       dtype=dtype, wrt=list(outcome.x), seed=seed, limits=limits,
                       max_steps=max_steps, max_depth=max_depth)


# ---------------------------------------------------------------- output

def plot_path(outcome, trace_at, values, label, out=None, color=False):
    """`minimize --plot`: the steps drawn on the function (adcli.plot.path_plot), over the
    one or two scalar inputs minimised over, the others at their values; the terminal text,
    or with `out` the notes of the file written."""
    from .plot import path_plot
    names = list(outcome.x)
    if not 1 <= len(names) <= 2 or any(np.size(outcome.x[n]) != 1 for n in names):
        raise InputError("--plot draws the path over one or two inputs of one number each; "
                         f"this minimises over {', '.join(names)}",
                         hint="choose them with --wrt, or leave out --plot")
    path = np.array([np.asarray(x, dtype=float).reshape(-1) for _, _, _, x in outcome.history])
    fixed = {k: v for k, v in values.items() if k not in names}
    return path_plot(trace_at, names, path, fixed=fixed, out=out, label=label, color=color)


def history_columns(outcome_names, shapes):
    """The columns of --history: step, value, grad_norm, then every input element, named
    as --points names them (x, W[0][1])."""
    from .points import _flat_names
    return ["step", "value", "grad_norm"] + [c for n, s in zip(outcome_names, shapes)
                                             for c in _flat_names(n, s)]


def write_history(outcome, path):
    """Every step as a CSV row, written whole or not at all."""
    from .files import writing
    names = list(outcome.x)
    shapes = [np.shape(v) for v in outcome.x.values()]
    with writing(path) as f:
        f.write(",".join(_csv_field(c) for c in history_columns(names, shapes)) + "\n")
        for k, value, gn, x in outcome.history:
            f.write(",".join([str(k), repr(float(value)), repr(float(gn))]
                             + [repr(float(v)) for v in x]) + "\n")


def _csv_field(text):
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def step_json(k, value, grad_norm, x):
    """One step as JSON (--json --stream)."""
    import json

    from .render import _json_leaf, to_jsonable
    return json.dumps({"step": k, "value": _json_leaf(value), "grad_norm": _json_leaf(grad_norm),
                       "x": {n: to_jsonable(v) for n, v in x.items()}})


def to_json(outcome):
    import json

    from .render import _json_leaf, to_jsonable
    obj = {"expr": outcome.label, "method": outcome.method, "converged": outcome.converged,
           "reason": outcome.reason, "message": outcome.message, "steps": outcome.steps,
           "value": _json_leaf(outcome.value), "grad_norm": _json_leaf(outcome.grad_norm),
           "x": {n: to_jsonable(v) for n, v in outcome.x.items()},
           "evaluations": outcome.evaluations, "retraces": outcome.retraces}
    if outcome.check is not None:
        obj["check"] = {"verdict": outcome.check.verdict, "message": outcome.check.message}
    return json.dumps(obj)


def _rows(outcome):
    """(key, label, text) of every line of the result."""
    from .render import number_text, plain_array
    rows = [(n, n, plain_array(v)) for n, v in outcome.x.items()]
    rows += [("value", "value", number_text(outcome.value)),
             ("grad_norm", "gradient norm", number_text(outcome.grad_norm)),
             ("steps", "steps", str(outcome.steps)),
             ("method", "method", outcome.method),
             ("converged", "converged", "true" if outcome.converged else "false"),
             ("stopped", "stopped", outcome.message)]
    if outcome.check is not None:
        rows.append(("gradcheck", "gradcheck", outcome.check.verdict
                     + (f": {outcome.check.message}" if outcome.check.message else "")))
    return rows


def to_plain(outcome):
    return "\n".join(f"{key}\t{text}" for key, _, text in _rows(outcome))


def to_rich(outcome, console):
    from rich.table import Table

    from .render import literal
    title = outcome.label if len(outcome.label) <= 70 else outcome.label[:67] + "..."
    table = Table(title=literal(f"minimize {title}", "table.title"), show_header=False)
    table.add_column("", style="bold cyan", no_wrap=True)
    table.add_column("")
    for key, label, text in _rows(outcome):
        style = "" if key != "converged" else ("green" if outcome.converged else "red")
        table.add_row(label, literal(text, style))
    console.print(table)


def progress_text(k, value, grad_norm):
    return f"step {k:,}  value {value:.6g}  gradient norm {grad_norm:.3g}"


def not_converged_note(outcome):
    return note("not-converged", outcome.message)


def tracer_at(source, *, dtype="float64", limits=None, seed=0, max_steps=1_000_000,
              max_depth=64):
    """trace_at(values) for minimize: the source (a sources.Source) traced at values
    {name: array}, as an expression or a script."""
    from . import api

    def trace_at(values):
        if source.script:
            return api.trace_script(source.text, values, dtype=dtype, limits=limits,
                                    filename=source.filename, seed=seed, max_steps=max_steps,
                                    max_depth=max_depth)
        return api.trace(source.text, values, dtype=dtype, limits=limits,
                         filename=source.filename, seed=seed)
    return trace_at
