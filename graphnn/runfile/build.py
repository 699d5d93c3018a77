"""Objects from a checked run: the model, the optimizer (with its schedule) and the
callbacks.  Used by the checks (to let constructors validate) and by ``Run``."""
from __future__ import annotations

import inspect
from pathlib import Path


def build_layers(doc: dict) -> list:
    """The layers of ``doc["model"]`` (a last Dense without units gets 1 until the data
    says more)."""
    import graphnn as gn
    layers = []
    for spec in doc["model"]["layers"]:
        args = {k: v for k, v in spec.items() if k != "type"}
        if spec["type"] == "Dense" and args.get("units") is None:
            args["units"] = 1            # placeholder while checking; filled from data
        layers.append(getattr(gn, spec["type"])(**args))
    return layers

def build_model(doc: dict, in_dim: int):
    """The Sequential model of ``doc["model"]`` for inputs of width ``in_dim``."""
    import graphnn as gn
    return gn.Sequential(build_layers(doc), input_dim=in_dim,
                         name=doc["model"]["name"])

def build_optimizer(doc: dict):
    """The optimizer (with its schedule) of ``doc["optimizer"]``."""
    from .. import optim, schedules
    cfg = dict(doc["optimizer"])
    cls = optim.OPTIMIZERS[cfg.pop("name")]
    lr = cfg.pop("lr")
    if isinstance(lr, dict):
        s = dict(lr)
        kind = getattr(schedules, s.pop("type"))
        if s.get("total") is None and "total" in inspect.signature(kind.__init__).parameters:
            s["total"] = int(s.get("warmup", 0)) + 1   # placeholder while checking
        lr = kind(s.pop("lr"), **s)
    if "betas" in cfg:
        cfg["betas"] = tuple(cfg["betas"])
    return cls(lr, **cfg)

def build_callbacks(doc: dict, out_dir) -> list:
    """The callbacks of ``doc["callbacks"]``, their files inside ``out_dir``."""
    from .. import callbacks as cb
    c = doc["callbacks"]
    out = []
    if c["csv"]:
        path = Path(out_dir) / c["csv"]["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        out.append(cb.CSVLogger(str(path), separator=c["csv"]["separator"]))
    if c["early_stopping"]:
        out.append(cb.EarlyStopping(**c["early_stopping"]))
    if c["checkpoint"]:
        args = dict(c["checkpoint"])
        args["path"] = str(Path(out_dir) / args["path"])
        ck = cb.ModelCheckpoint(**args)
        Path(ck.folder()).mkdir(parents=True, exist_ok=True)   # inside out_dir (checked)
        out.append(ck)
    if c["terminate_on_nan"]:
        out.append(cb.TerminateOnNaN())
    return out
