"""Elementwise activations: each one's math, written once as two scalar functions.

``forward(x)`` gives y = f(x); ``grad(x, y)`` gives dy/dx from the input x and the
output y (whichever is cheaper).  The sources below are pasted into the generated
module of every backend (``@njit`` on the CPU, ``@cuda.jit(device=True)`` on the
GPU), so both compile the same arithmetic.  Constants are typed (``one``, ``half``
... are ``real(...)`` in the generated module) so float32 stays float32.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import Node
from .. import ir


@dataclass(frozen=True)
class Activation:
    name: str
    forward: str                  # source of  def <name>(x)
    grad: str                     # source of  def <name>_grad(x, y)
    grad_uses_x: bool             # False: the grad needs only y, so y may overwrite x
    constants: dict = field(default_factory=dict)   # NAME -> float, typed in the module
    needs: tuple = ()             # other activations whose functions this one calls
    formula: str = ""             # for comments: "max(x, 0)"
    forward32: str = ""           # a faster float32 form of forward, if one is as accurate
    constants32: dict = field(default_factory=dict)
    helpers32: tuple = ()         # sources of functions forward32/grad32 call (shared ones)
    grad32: str = ""              # a faster float32 form of grad, if one is as accurate

    def forward_for(self, dtype_name: str) -> tuple[str, dict]:
        """The forward source and its constants for a dtype."""
        if dtype_name == "float32" and self.forward32:
            return self.forward32, {**self.constants, **self.constants32}
        return self.forward, self.constants

    def grad_for(self, dtype_name: str) -> str:
        """The grad source for a dtype."""
        return self.grad32 if dtype_name == "float32" and self.grad32 else self.grad

    def helpers_for(self, dtype_name: str) -> tuple:
        """Sources of the helper functions the forward and grad sources for a dtype call."""
        return self.helpers32 if dtype_name == "float32" else ()


def _act(name, formula, forward, grad, grad_uses_x, constants=None, needs=(), forward32="",
         constants32=None, helpers32=(), grad32=""):
    return Activation(name, forward.strip("\n"), grad.strip("\n"), grad_uses_x,
                      constants or {}, needs, formula, forward32.strip("\n"), constants32 or {},
                      tuple(h.strip("\n") for h in helpers32), grad32.strip("\n"))


# float32 tanh as a rational function (the form Eigen and XLA use): pure arithmetic, so the
# loop vectorises; measured here 2.7 ns/element against 28 ns for libm's tanhf, within
# 6 ulp (3.6e-7 absolute) of the exact value.  Beyond +-7.9 tanh is +-1 in float32.
_TANH32 = {"TANH_CLAMP": 7.90531110763549805,
           "TANH_A1": 4.89352455891786e-03, "TANH_A3": 6.37261928875436e-04,
           "TANH_A5": 1.48572235717979e-05, "TANH_A7": 5.12229709037114e-08,
           "TANH_A9": -8.60467152213735e-11, "TANH_A11": 2.00018790482477e-13,
           "TANH_A13": -2.76076847742355e-16, "TANH_B0": 4.89352518554385e-03,
           "TANH_B2": 2.26843463243900e-03, "TANH_B4": 1.18534705686654e-04,
           "TANH_B6": 1.19825839466702e-06}

# float32 erf as a rational function on [-4, 4] (Eigen's float erf; beyond, erf is +-1 in
# float32), for gelu and its gradient: pure arithmetic, so the loops vectorise.  Measured
# here: gelu 0.2 ns/element against 15-18 ns with libm's erf (gradient 0.86 against
# 16.5 ns); erf within 4.2e-7 absolute, gelu within 1.2e-6 absolute (4.5e-7 with libm erf
# rounded to float32) of float64.
_ERF32 = {"ERF_CLAMP": 4.0,
          "ERF_A1": -1.60960333262415e-02, "ERF_A3": -2.95459980854025e-03,
          "ERF_A5": -7.34990630326855e-04, "ERF_A7": -5.69250639462346e-05,
          "ERF_A9": -2.10102402082508e-06, "ERF_A11": 2.77068142495902e-08,
          "ERF_A13": -2.72614225801306e-10, "ERF_B0": -1.42647390514189e-02,
          "ERF_B2": -7.37332916720468e-03, "ERF_B4": -1.68282697438203e-03,
          "ERF_B6": -2.13374055278905e-04, "ERF_B8": -1.45660718464996e-05}

# float32 exp(-|x|) = 2^-n exp(-f) written out, for sigmoid and softplus: n = round(|x| / ln 2)
# as a product of integer powers of two, exp(-f) for |f| <= ln(2)/2 as its degree-7 Taylor
# polynomial (error < 6e-9), ln 2 split in two so f is exact.  No libm call, so the loops
# vectorise.  Measured here per element: sigmoid 0.57 ns against 6.5-9 ns with math.exp,
# within 1.8e-7 relative of the exact value for every normal float32 result (the libm
# form: 1.4e-7); softplus, with log1p(e) = 2 atanh(e / (2 + e)) as a series, 0.87 ns
# against 10.5 ns, within 2.4e-7 relative (the libm form: 1.0e-7).
_EXP32 = {"EXP_MAX": 88.0, "INV_LN2": 1.4426950408889634,
          "LN2_HI": 0.693145751953125, "LN2_LO": 1.428606765330187e-06,
          "EXP_C2": 1 / 2, "EXP_C3": 1 / 6, "EXP_C4": 1 / 24, "EXP_C5": 1 / 120,
          "EXP_C6": 1 / 720, "EXP_C7": 1 / 5040}
_EXP_NEG_ABS32 = """
def exp_neg_abs(x):
    # exp(-|x|) = 2^-n exp(-f) by arithmetic alone (vectorises); 88: below, exp underflows
    t = min(abs(x), EXP_MAX)
    n = np.int64(t * INV_LN2 + half)
    f = (t - real(n) * LN2_HI) - real(n) * LN2_LO
    g = -f
    p = one + g * (one + g * (EXP_C2 + g * (EXP_C3 + g * (EXP_C4 + g * (EXP_C5 + g * (
        EXP_C6 + g * EXP_C7))))))
    a = min(n, 60)
    b = min(n - a, 60)
    return p / (real(np.int64(1) << a) * real(np.int64(1) << b) * real(np.int64(1) << (n - a - b)))
"""
_LOG1P32 = {f"LOG1P_C{k}": 1 / k for k in range(3, 17, 2)}
_ERF_RATIONAL32 = """
def erf_rational(u):
    # erf(u) = u p(u^2) / q(u^2), a rational fit on [-4, 4] (beyond: +-1 in float32)
    u = min(max(u, -ERF_CLAMP), ERF_CLAMP)
    u2 = u * u
    p = (((((ERF_A13 * u2 + ERF_A11) * u2 + ERF_A9) * u2 + ERF_A7) * u2 + ERF_A5) * u2
         + ERF_A3) * u2 + ERF_A1
    q = (((ERF_B8 * u2 + ERF_B6) * u2 + ERF_B4) * u2 + ERF_B2) * u2 + ERF_B0
    return u * p / q
"""


ACTIVATIONS: dict[str, Activation] = {a.name: a for a in [
    _act("relu", "max(x, 0)", """
def relu(x):
    return x if x > zero else zero
""", """
def relu_grad(x, y):
    return one if y > zero else zero
""", grad_uses_x=False),

    _act("leaky_relu", "x if x > 0 else 0.01 x", """
def leaky_relu(x):
    return x if x > zero else LEAKY_SLOPE * x
""", """
def leaky_relu_grad(x, y):
    return one if y > zero else LEAKY_SLOPE
""", grad_uses_x=False, constants={"LEAKY_SLOPE": 0.01}),

    _act("sigmoid", "1 / (1 + exp(-x))", """
def sigmoid(x):
    # never exponentiates a large positive number: no overflow for any x
    if x >= zero:
        return one / (one + math.exp(-x))
    e = math.exp(x)
    return e / (one + e)
""", """
def sigmoid_grad(x, y):
    return y * (one - y)
""", grad_uses_x=False, forward32="""
def sigmoid(x):
    # the float64 form's overflow-free quotient, 1 / (1 + e) or e / (1 + e), as one select
    e = exp_neg_abs(x)
    return (one if x >= zero else e) / (one + e)
""", constants32=_EXP32, helpers32=(_EXP_NEG_ABS32,)),

    _act("tanh", "tanh(x)", """
def tanh(x):
    return math.tanh(x)
""", """
def tanh_grad(x, y):
    return one - y * y
""", grad_uses_x=False, forward32="""
def tanh(x):
    # x p(x^2) / q(x^2), a rational fit of tanh on [-7.9, 7.9]; vectorises (no libm call)
    x = min(max(x, -TANH_CLAMP), TANH_CLAMP)
    x2 = x * x
    p = ((((((TANH_A13 * x2 + TANH_A11) * x2 + TANH_A9) * x2 + TANH_A7) * x2 + TANH_A5)
          * x2 + TANH_A3) * x2 + TANH_A1)
    q = ((TANH_B6 * x2 + TANH_B4) * x2 + TANH_B2) * x2 + TANH_B0
    return x * p / q
""", constants32=_TANH32),

    _act("softplus", "log(1 + exp(x))", """
def softplus(x):
    # log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), exact for large |x|
    return max(x, zero) + math.log1p(math.exp(-abs(x)))
""", """
def softplus_grad(x, y):
    return sigmoid(x)
""", grad_uses_x=True, needs=("sigmoid",), forward32="""
def softplus(x):
    # max(x, 0) + log1p(e), e = exp(-|x|); log1p(e) = 2 atanh(s), s = e / (2 + e) <= 1/3,
    # as its odd series to s^15 (relative error < 1e-8); vectorises
    e = exp_neg_abs(x)
    s = e / (two + e)
    s2 = s * s
    return max(x, zero) + two * s * (one + s2 * (LOG1P_C3 + s2 * (LOG1P_C5 + s2 * (
        LOG1P_C7 + s2 * (LOG1P_C9 + s2 * (LOG1P_C11 + s2 * (LOG1P_C13 + s2 * LOG1P_C15)))))))
""", constants32={**_EXP32, **_LOG1P32}, helpers32=(_EXP_NEG_ABS32,)),

    _act("gelu", "x Phi(x) = x (1 + erf(x / sqrt 2)) / 2", """
def gelu(x):
    return half * x * (one + math.erf(x * SQRT_HALF))
""", """
def gelu_grad(x, y):
    # d/dx [x Phi(x)] = Phi(x) + x phi(x)
    return half * (one + math.erf(x * SQRT_HALF)) + x * INV_SQRT_2PI * math.exp(-half * x * x)
""", grad_uses_x=True,
         constants={"SQRT_HALF": 0.7071067811865476, "INV_SQRT_2PI": 0.3989422804014327},
         forward32="""
def gelu(x):
    # x Phi(x) with the rational erf: vectorises
    return half * x * (one + erf_rational(x * SQRT_HALF))
""", grad32="""
def gelu_grad(x, y):
    # Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi): no libm call
    phi = INV_SQRT_2PI * exp_neg_abs(half * x * x)
    return half * (one + erf_rational(x * SQRT_HALF)) + x * phi
""", constants32={**_ERF32, **_EXP32}, helpers32=(_EXP_NEG_ABS32, _ERF_RATIONAL32)),

    _act("linear", "x", """
def linear(x):
    return x
""", """
def linear_grad(x, y):
    return one
""", grad_uses_x=False),
]}

# Row-wise activations: not elementwise, handled by their own node (ops/softmax.py).
ROWWISE = ("softmax",)


def check_activation(name) -> str:
    """The canonical activation name, or a ValueError listing the known ones."""
    if name is None:
        return "linear"
    if isinstance(name, str) and (name in ACTIVATIONS or name in ROWWISE):
        return name
    known = ", ".join(sorted(list(ACTIVATIONS) + list(ROWWISE)))
    raise ValueError(f"unknown activation {name!r}; known activations: {known}")


def with_dependencies(names) -> list[Activation]:
    """The activations named, plus those their functions call, dependencies first."""
    out: list[Activation] = []

    def visit(n):
        a = ACTIVATIONS[n]
        for d in a.needs:
            visit(d)
        if a not in out:
            out.append(a)
    for n in names:
        visit(n)
    return out


class ActivationNode(Node):
    """An elementwise activation as a node of its own: ``gn.ReLU()(h)``."""

    activation = "linear"

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self.kind = self.activation

    def out_width(self, in_widths):
        return in_widths[0]

    def describe(self) -> str:
        return type(self).__name__

    def forward(self, L):
        y, x = L.out(self), L.out(self.inputs[0])
        return [ir.BiasAct(y, x, None, L.activation(self), note=f"y = {self.activation}(x)")]

    def backward(self, L):
        act = L.activation(self)
        x = self.inputs[0]
        if not L.needs_grad(x):
            return []
        gx, acc = L.grad_target(x)
        return [ir.ActGrad(gx, L.grad(self), L.out(x), L.out(self), act, acc=acc,
                           note=f"dx = dy * {act}'(x)")]


def _node_class(act_name: str, cls_name: str):
    doc = f"Elementwise {act_name}: y = {ACTIVATIONS[act_name].formula}."
    return type(cls_name, (ActivationNode,), {"activation": act_name, "__doc__": doc})


ReLU = _node_class("relu", "ReLU")
LeakyReLU = _node_class("leaky_relu", "LeakyReLU")
Sigmoid = _node_class("sigmoid", "Sigmoid")
Tanh = _node_class("tanh", "Tanh")
Softplus = _node_class("softplus", "Softplus")
GELU = _node_class("gelu", "GELU")
Linear = _node_class("linear", "Linear")
