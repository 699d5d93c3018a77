"""The CUDA backend (graphnn/compile/cuda.py), checked without a GPU.

The checks that import ``numba.cuda`` run in subprocesses (tests/cuda_checks.py), started
together the first time a test here needs one, so this process never imports it and the
simulator's environment variable never leaks into other tests:

* ``sim``: NUMBA_ENABLE_CUDASIM=1 — every kernel vs NumPy on small ragged shapes (4x4 tiles
  and 8-thread blocks keep the simulator cheap, plus one launch of the default tiles), and
  whole-graph training with device="cuda" vs device="cpu" (parameters within 1e-5 relative
  in float32, 1e-12 in float64);
* ``ptx 8.0`` / ``ptx 9.0``: every kind of kernel through ``cuda.compile_ptx`` with explicit
  signatures, float32 PTX free of ``.f64`` (skipped when NVVM/NVRTC are missing);
* ``gpu``: with GRAPHNN_TEST_GPU=1, the whole-graph checks on a real GPU;
* ``nodevice``: device="cuda" with neither simulator nor GPU raises a ValueError saying why.

In this process, generation only: the source's shape, that no model or layer name reaches it
(hostile names), and that width variants of an architecture give one source.

Cost: about 20-40 s of wall time on two cores (the subprocesses run side by side).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "cuda_checks.py")
_spec = importlib.util.spec_from_file_location("cuda_checks", SCRIPT)
checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checks)          # standard library only at its top: cheap

HAVE_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
GPU_WANTED = os.environ.get("GRAPHNN_TEST_GPU") == "1"
TIMEOUT = 600
needs_numba_cuda = pytest.mark.skipif(
    not HAVE_NUMBA_CUDA, reason="numba-cuda is not installed (pip install graphnn[cuda])")

MODES = {"sim": ["sim"], "ptx80": ["ptx", "8.0"], "ptx90": ["ptx", "9.0"], "gpu": ["gpu"],
         "nodevice": ["nodevice"], "nopackage": ["nopackage"]}


def _wanted_modes(session) -> set:
    """The subprocesses the selected tests need (so `-k` runs start only those)."""
    wanted = set()
    for item in session.items:
        mode = getattr(item, "callspec", None) and item.callspec.params.get("cuda_mode")
        if mode:
            wanted.add(mode)
    return wanted


class _Runs:
    """Subprocesses of cuda_checks.py, started together, read when first asked for."""

    def __init__(self, modes):
        self.procs, self.results = {}, {}
        for mode in modes:
            self._start(mode)

    def _start(self, mode):
        env = dict(os.environ)
        env.pop("NUMBA_ENABLE_CUDASIM", None)
        if mode == "sim":
            env["NUMBA_ENABLE_CUDASIM"] = "1"
        args = MODES[mode]
        if mode == "nopackage":
            code = ("import sys; sys.modules['numba_cuda'] = None; sys.argv[1:] = ['nodevice']; "
                    f"p = {SCRIPT!r}; exec(compile(open(p).read(), p, 'exec'), "
                    "{'__name__': '__main__', '__file__': p})")
            cmd = [sys.executable, "-c", code]
        else:
            cmd = [sys.executable, SCRIPT] + args
        self.procs[mode] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True,
                                            cwd=os.path.dirname(HERE))

    def get(self, mode) -> dict:
        if mode not in self.results:
            if mode not in self.procs:
                self._start(mode)
            proc = self.procs[mode]
            try:
                out, err = proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"cuda_checks.py {' '.join(MODES[mode])} took over {TIMEOUT} s")
            found, skip = {}, None
            for line in out.splitlines():
                if line.startswith("{"):
                    rec = json.loads(line)
                    if "skip" in rec:
                        skip = rec["skip"]
                    else:
                        found[rec["check"]] = rec
            if not found and skip is None:
                pytest.fail(f"cuda_checks.py {' '.join(MODES[mode])} exited {proc.returncode} "
                            f"without results:\n{out[-2000:]}\n{err[-4000:]}")
            self.results[mode] = {"skip": skip, "checks": found, "stderr": err}
        return self.results[mode]

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="session")
def runs(request):
    modes = _wanted_modes(request.session) & set(MODES)
    if not HAVE_NUMBA_CUDA:
        modes &= {"nodevice", "nopackage"}
    if not GPU_WANTED:
        modes.discard("gpu")
    r = _Runs(sorted(modes))
    yield r
    r.close()


def _check(runs, mode, name):
    res = runs.get(mode)
    if res["skip"]:
        pytest.skip(res["skip"])
    rec = res["checks"].get(name)
    assert rec is not None, f"check {name} did not run:\n{res['stderr'][-4000:]}"
    assert rec["ok"], rec["detail"]
    return rec


# -- (a) the simulator ------------------------------------------------------------------------
@needs_numba_cuda
@pytest.mark.parametrize("cuda_mode", ["sim"])
@pytest.mark.parametrize("name", checks.SIM_CHECKS)
def test_simulator(runs, cuda_mode, name):
    """Kernels vs NumPy and training vs the CPU backend, on Numba's CUDA simulator."""
    _check(runs, cuda_mode, name)


# -- (b) PTX ------------------------------------------------------------------------------------
@needs_numba_cuda
@pytest.mark.parametrize("cuda_mode", ["ptx80", "ptx90"])
def test_ptx(runs, cuda_mode):
    """Every kind of kernel compiles for sm_80 and sm_90; float32 PTX has no .f64."""
    res = runs.get(cuda_mode)
    if res["skip"]:
        pytest.skip(res["skip"])
    bad = {k: v["detail"] for k, v in res["checks"].items() if not v["ok"]}
    assert len(res["checks"]) >= 80, f"only {len(res['checks'])} kernels compiled"
    assert not bad, "\n".join(f"{k}: {v}" for k, v in bad.items())


# -- (c) a real GPU -----------------------------------------------------------------------------
@needs_numba_cuda
@pytest.mark.skipif(not GPU_WANTED, reason="set GRAPHNN_TEST_GPU=1 to run these on a real GPU")
@pytest.mark.parametrize("cuda_mode", ["gpu"])
@pytest.mark.parametrize("name", checks.GPU_CHECKS)
def test_gpu(runs, cuda_mode, name):
    """The whole-graph checks on a GPU (no simulator), plus a wider model."""
    _check(runs, cuda_mode, name)


# -- (d) no GPU: a clear error ----------------------------------------------------------------
REASONS = ("pip install graphnn[cuda]", "no NVIDIA driver", "no CUDA GPU", "reports no GPU",
           "NVVM")


@pytest.mark.parametrize("cuda_mode", ["nodevice"])
def test_no_gpu_raises_clear_error(runs, cuda_mode):
    """device='cuda' without simulator and GPU: ValueError naming the reason and the fix."""
    rec = _check(runs, cuda_mode, "nodevice")
    assert rec["detail"].startswith("device='cuda'"), rec["detail"]
    assert any(r in rec["detail"] for r in REASONS), rec["detail"]


@pytest.mark.parametrize("cuda_mode", ["nopackage"])
def test_missing_numba_cuda_says_pip_install(runs, cuda_mode):
    rec = _check(runs, cuda_mode, "nodevice")
    assert "numba-cuda" in rec["detail"] and "pip install graphnn[cuda]" in rec["detail"], \
        rec["detail"]


# -- in this process: generation only (numba.cuda is not imported) ----------------------------
def _mlp(*widths, act="relu"):
    import graphnn as gn
    layers = [gn.Dense(w, activation=act) for w in widths[1:-1]] + [gn.Dense(widths[-1])]
    return gn.Sequential(layers, input_dim=widths[0])


def test_generation_does_not_import_numba_cuda():
    code = ("import sys, numpy as np, graphnn as gn\n"
            "from graphnn.compile import cuda as gc\n"
            "from graphnn.compile.plan import lower\n"
            "from graphnn.ops.losses import check_loss\n"
            "m = gn.Sequential([gn.Dense(4, activation='relu'), gn.Dense(2)], input_dim=3)\n"
            "src = gc.CudaModule(lower(m, check_loss('mse')), gn.SGD(lr=0.1), np.float32).source()\n"
            "assert 'numba.cuda' not in sys.modules, 'generation imported numba.cuda'\n"
            "print(len(src))\n")
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(HERE), timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]


def test_source_reads_like_the_cpu_one():
    import graphnn as gn
    from graphnn.compile import cuda as gc
    from graphnn.compile.plan import lower
    from graphnn.ops.losses import check_loss
    plan = lower(_mlp(784, 256, 128, 10), check_loss("cross_entropy"))
    mod = gc.CudaModule(plan, gn.SGD(lr=0.1), np.float32)
    src = mod.source()
    compile(src, "<generated>", "exec")                       # valid Python
    for text in ("real = np.float32", "@cuda.jit(device=True)\ndef relu(x):",
                 "def cross_entropy_row(z, labels, g, i, n):", "def sgd_update(",
                 "# node 1: Dense (relu) of node 0\n",
                 "# node 3: Dense (linear) of node 2 (backward)\n",
                 "# h1 = x @ W1;  h1 = relu(h1 + b1)   (in the product's epilogue)\n",
                 'launch_mm("mm_nn_bias_relu", *v.h1.shape)(v.h1, x, v.W1, v.b1)',
                 "# dW3 = h2^T @ d3\n", "v.W2 = param(params, 2)   # node 2 (Dense) weight",
                 "def train_epoch(", "def predict(", "def evaluate(", "def loss_and_grads("):
        assert text in src, text
    # the shared scalar sources are pasted in, not restated
    from graphnn.ops.activations import ACTIVATIONS
    from graphnn.ops.losses import LOSSES
    assert ACTIVATIONS["relu"].grad in src and LOSSES["cross_entropy"].source in src
    # the MNIST MLP: gather, 3 fused products, loss, colsum + 2 products, 2 x (activation
    # gradient with column sums + products) - 1 (no dx for the input), update
    assert mod.launches_per_step == 14
    # float32 kernels use typed constants only
    assert "real(0.5)" in src or "half = real(0.5)" in src


# -- no name enters the generated source (issue 9) --------------------------------------------
HOSTILE = ['x"""', "'''; import os; '''", '"""; __import__("os").system("touch PWNED"); """',
           "a\nb = 1\n", "back\\slash\\", "{}{0}{name}", "caf\u00e9 \u6a21\u578b \u202e",
           "\x00nul", "n" * 10240]


def test_no_user_name_enters_the_source(tmp_path):
    """Hostile model names, distinctive node names and a graph rebuilt from a crafted
    checkpoint header: the source never contains them, compiles, and names no file."""
    import graphnn as gn
    from graphnn.compile import cuda as gc
    from graphnn.compile.plan import lower
    from graphnn.io import build_graph, describe_graph
    from graphnn.ops.losses import check_loss
    node_names = ["secretinput", "Zq_first_layer_x", "Zq_branch", "Zq_drop", "Zq_cat",
                  "Zq" + "y" * 254]                   # the longest valid name (256 characters)
    for name in HOSTILE:
        x = gn.Input(3, name=node_names[0])
        h = gn.Dense(4, activation="tanh", name=node_names[1])(x)
        r = gn.Dense(4, activation="relu", name=node_names[2])(h)
        c = gn.Concatenate(name=node_names[4])([r, gn.Dropout(0.5, name=node_names[3])(h)])
        out = gn.Dense(2, activation="softmax", name=node_names[5])(c)
        try:          # model names are data: printable, at most 256 characters, no " or \\
            model = gn.Model(x, out, name=name)
        except ValueError as e:
            assert "model name" in str(e)
            continue
        desc = describe_graph(model)
        for m in (model, build_graph(desc)):
            src = gc.CudaModule(lower(m, check_loss("cross_entropy")), gn.Adam(lr=0.01),
                                np.float32).source()
            compile(src, "<generated>", "exec")
            assert name not in src and repr(name) not in src, name[:40]
            for node in node_names:
                assert node not in src, node
            assert src.isascii()
    # names that are not identifiers are refused where they come in, with a ValueError
    for name in HOSTILE:
        with pytest.raises(ValueError, match="name"):
            gn.Dense(2, name=name)
    # the kernel library takes activation names from the fixed table only
    mod = gc.CudaModule(lower(_mlp(3, 2), check_loss("mse")), gn.SGD(lr=0.1), np.float32)
    for bad in ('x"""', "relu(x)\nimport os"):
        with pytest.raises(ValueError, match="unknown activation"):
            mod.k_bias_act(bad, True)
    assert not (tmp_path / "PWNED").exists() and not os.path.exists("PWNED")


# -- one source per architecture (issue 10) ---------------------------------------------------
def _variant(d, w1, w2, rate, k=3):
    import graphnn as gn
    x = gn.Input(d)
    h = gn.Dense(w1, activation="tanh")(x)
    r = gn.Add()([h, gn.Dense(w1, activation="relu")(h)])
    c = gn.Concatenate()([r, gn.Dropout(rate)(gn.Dense(w2, activation="gelu")(h))])
    return gn.Model(x, gn.Dense(k, activation="softmax")(c))


def test_width_variants_share_one_source():
    """Widths, input width, output width and dropout rate change the layout only."""
    import graphnn as gn
    from graphnn.compile import cuda as gc
    from graphnn.compile.plan import lower
    from graphnn.ops.losses import check_loss
    mods = [gc.CudaModule(lower(_variant(*v), check_loss("cross_entropy")), gn.Adam(lr=0.01),
                          np.float32) for v in ((3, 4, 5, 0.5), (784, 256, 100, 0.1, 10))]
    assert mods[0].source() == mods[1].source()
    assert mods[0].layout != mods[1].layout
    lay = mods[1].layout
    assert lay["DROPOUT"] == ((0.1, 1 / 0.9),) and lay["LOGITS_WIDTH"] == 10
    assert lay["OFFSETS"] and 256 in lay["OFFSETS"]          # the concatenation's offset
    plan = mods[1].plan
    assert lay["PARAMS"] == tuple((p.offset, p.shape) for p in plan.params)
    # another structure, another source
    other = gc.CudaModule(lower(_mlp(3, 4, 2), check_loss("cross_entropy")), gn.Adam(lr=0.01),
                          np.float32)
    assert other.source() != mods[0].source()


def test_float64_source_and_all_instructions():
    import graphnn as gn
    from graphnn.compile import cuda as gc
    plan = checks.plan_of(checks._graph())
    mod = gc.CudaModule(plan, gn.Adam(lr=0.01), np.float64)
    src = mod.source()
    assert "real = np.float64" in src
    for kernel in ("sum2", "place", "copy", "copy_acc", "mul", "dropout", "mm_nt_acc_big",
                   "act_grad_relu_colsum", "loss", "loss_weighted", "gather", "apply_update"):
        assert kernel in mod.kernels, kernel
    assert mod.launches_per_step == mod.launches["train_step"] + 1


def test_bad_tile_is_refused():
    from graphnn.compile import cuda as gc
    with pytest.raises(ValueError, match="tile"):
        gc.Config(big=gc.Tile(64, 64, 16, 3, 4)).check()
    with pytest.raises(ValueError, match="power of two"):
        gc.Config(block=100).check()
    with pytest.raises(ValueError, match="positive integers"):
        gc.Config(big=gc.Tile(64, 64, 16, "4", 4)).check()
