"""Structured pruning of the fixed MLP layout: drop neurons of a hidden layer, or a whole layer.

Every operation returns a NEW `MLP` built from the changed spec and leaves its input untouched,
so an episode can always go back to (or compare with) the network it started from.

Hidden layer `i` is `blocks[i].linear` (its rows are the layer's neurons). The tensors that
live on that width are: the rows (weight and bias) of `blocks[i].linear`, the columns of the
next Linear (`blocks[i+1].linear`, or `head` for the last hidden layer) and, when
`blocks[i+1].pre` is a BatchNorm1d, that BatchNorm's per-feature tensors.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from neon_ray.errors import ConfigError
from neon_ray.nets.spec import ArchSpec, MLP, build_mlp

IMPORTANCE_METHODS = ("l2", "l1", "activation")

# keep_rate * width is computed in floating point: 0.7 * 100 is 70.00000000000001, whose ceil
# would keep one neuron too many. Products within this distance of an integer count as it.
_CEIL_SLACK = 1e-9


def kept_width(width: int, keep_rate: float) -> int:
    """ceil(keep_rate * width), at least 1, robust to float error in the product."""
    return max(1, math.ceil(keep_rate * width - _CEIL_SLACK))


def _check_layer(model: MLP, layer: int) -> None:
    depth = model.spec.depth
    if not isinstance(layer, int) or not 0 <= layer < depth:
        raise ConfigError(f"hidden layer index {layer!r} out of range: the network {model.spec.describe()} has layers 0..{depth - 1}")


def _next_linear(model: MLP, layer: int) -> nn.Linear:
    """The Linear that reads hidden layer `layer`."""
    return model.blocks[layer + 1].linear if layer + 1 < model.spec.depth else model.head


def _next_linear_key(model: MLP, layer: int) -> str:
    return f"blocks.{layer + 1}.linear" if layer + 1 < model.spec.depth else "head"


def _output_batchnorm_key(model: MLP, layer: int) -> str | None:
    """State-dict prefix of the BatchNorm on hidden layer `layer`'s width, if there is one."""
    if layer + 1 < model.spec.depth and isinstance(model.blocks[layer + 1].pre, nn.BatchNorm1d):
        return f"blocks.{layer + 1}.pre"
    return None


@torch.no_grad()
def layer_activations(model: MLP, layer: int, probe: torch.Tensor) -> torch.Tensor:
    """Outputs of hidden layer `layer` (after its activation) on `probe`, in eval mode."""
    was_training = model.training
    model.eval()
    x = probe
    for block in model.blocks[: layer + 1]:
        x = block(x)
    model.train(was_training)
    return x


@torch.no_grad()
def neuron_importance(model: MLP, layer: int, method: str = "l2", probe: torch.Tensor | None = None) -> torch.Tensor:
    """One score per neuron of hidden layer `layer`; higher means more worth keeping.

    `l2` / `l1`: the norm of the neuron's incoming weights (its row of `blocks[layer].linear`,
    bias excluded: the bias alone does not make a neuron informative). `activation`: the mean
    absolute output of the neuron over `probe` rows in eval mode (needs `probe`).
    """
    _check_layer(model, layer)
    weight = model.blocks[layer].linear.weight
    if method == "l2":
        return weight.norm(p=2, dim=1)
    if method == "l1":
        return weight.abs().sum(dim=1)
    if method == "activation":
        if probe is None:
            raise ConfigError("importance 'activation' needs a probe batch of input rows (probe=None was given)")
        return layer_activations(model, layer, probe).abs().mean(dim=0)
    raise ConfigError(f"unknown importance method {method!r}, expected one of {IMPORTANCE_METHODS}")


def kept_neurons(importance: torch.Tensor, width: int) -> torch.Tensor:
    """Indices of the `width` highest scores, in their original order.

    A stable sort breaks ties by position, so equal scores never make the choice depend on
    the sorting algorithm.
    """
    order = torch.sort(importance, descending=True, stable=True).indices
    return torch.sort(order[:width]).values


def _cloned_state(model: MLP) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _model_from_state(spec: ArchSpec, state: dict[str, torch.Tensor], like: MLP) -> MLP:
    """An MLP for `spec` that takes ownership of `state` (no random initialisation wasted)."""
    with torch.device("meta"):
        model = MLP(spec)
    model.load_state_dict(state, strict=True, assign=True)
    model.train(like.training)
    return model


def _slice_state(model: MLP, layer: int, keep: torch.Tensor) -> dict[str, torch.Tensor]:
    state = _cloned_state(model)
    rows = f"blocks.{layer}.linear"
    state[f"{rows}.weight"] = state[f"{rows}.weight"][keep]
    state[f"{rows}.bias"] = state[f"{rows}.bias"][keep]
    cols = _next_linear_key(model, layer)
    state[f"{cols}.weight"] = state[f"{cols}.weight"][:, keep]
    bn = _output_batchnorm_key(model, layer)
    if bn is not None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"{bn}.{name}"] = state[f"{bn}.{name}"][keep]
        # num_batches_tracked is a scalar and is carried over unchanged by the clone
    return state


def _reinit_around(state: dict[str, torch.Tensor], model: MLP, spec: ArchSpec, layer: int, seed: int | None) -> None:
    """Original NEON: the Linear into and out of the layer get fresh random weights."""
    fresh = build_mlp(spec, seed).state_dict()
    for key in (f"blocks.{layer}.linear", _next_linear_key(model, layer)):
        for name in ("weight", "bias"):
            state[f"{key}.{name}"] = fresh[f"{key}.{name}"].clone()


def prune_layer(
    model: MLP,
    layer: int,
    keep_rate: float,
    importance: str = "l2",
    probe: torch.Tensor | None = None,
    reinit: bool = False,
    seed: int | None = None,
) -> MLP:
    """Keep the ceil(keep_rate * width) most important neurons of hidden layer `layer`.

    Returns `model` itself when no neuron goes (keep_rate 1.0, or a width so small that the
    ceiling keeps all of it): nothing changes, nothing to fine-tune. Otherwise a new MLP. `reinit=True` reproduces the original NEON step (the two Linear layers
    around the layer restart from random weights, drawn with `seed`) for fidelity checks.
    """
    _check_layer(model, layer)
    if not isinstance(keep_rate, (int, float)) or not 0.0 < keep_rate <= 1.0:
        raise ConfigError(f"keep_rate must be in (0, 1], got {keep_rate!r}")
    width = model.spec.hidden[layer]
    new_width = kept_width(width, keep_rate)
    if new_width == width:
        return model
    keep = kept_neurons(neuron_importance(model, layer, importance, probe), new_width)
    spec = model.spec.with_width(layer, new_width)
    state = _slice_state(model, layer, keep)
    if reinit:
        _reinit_around(state, model, spec, layer, seed)
    return _model_from_state(spec, state, model)


def _batchnorm_affine(state: dict[str, torch.Tensor], key: str, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with BatchNorm_eval(x) = scale * x + shift."""
    scale = state[f"{key}.weight"] / torch.sqrt(state[f"{key}.running_var"] + eps)
    shift = state[f"{key}.bias"] - scale * state[f"{key}.running_mean"]
    return scale, shift


def _fold_affine_into_input(w: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor):
    """Linear(scale * x + shift) as one Linear of x."""
    return w * scale, b + w @ shift


@torch.no_grad()
def remove_layer(model: MLP, layer: int) -> MLP:
    """Merge hidden layer `layer` away, making the network one hidden layer shallower.

    The Linear into the layer (W1, b1) and the Linear out of it (W2, b2) become one Linear with
    W = W2 @ W1 and b = W2 @ b1 + b2. This is an approximation: it drops the layer's activation,
    so it is exact only where the activation acts as the identity on the pre-activations it
    sees (e.g. ReLU on positive inputs); the fine-tuning that follows a step repairs the rest.
    BatchNorm is folded in using its running statistics (exact in eval mode), Dropout is dropped
    (it is the identity in eval mode):
    - layer < depth-1: blocks[layer+1].pre (on the removed width) is folded into W2; the merged
      block keeps blocks[layer].pre and takes blocks[layer+1]'s activation.
    - layer == depth-1: the merged Linear becomes the head, which has no pre-layer, so a
      BatchNorm in blocks[layer].pre is folded into W1 and a Dropout there is dropped.
    Refused when the network has a single hidden layer (it would leave no hidden layer).
    """
    _check_layer(model, layer)
    spec = model.spec
    if spec.depth == 1:
        raise ConfigError(f"cannot remove hidden layer {layer} of {spec.describe()}: it is the only hidden layer left")
    state = _cloned_state(model)
    w1, b1 = state[f"blocks.{layer}.linear.weight"], state[f"blocks.{layer}.linear.bias"]
    out_key = _next_linear_key(model, layer)
    w2, b2 = state[f"{out_key}.weight"], state[f"{out_key}.bias"]
    last = layer + 1 == spec.depth
    if not last and isinstance(model.blocks[layer + 1].pre, nn.BatchNorm1d):
        w2, b2 = _fold_affine_into_input(w2, b2, *_batchnorm_affine(state, f"blocks.{layer + 1}.pre", model.blocks[layer + 1].pre.eps))
    if last and isinstance(model.blocks[layer].pre, nn.BatchNorm1d):
        w1, b1 = _fold_affine_into_input(w1, b1, *_batchnorm_affine(state, f"blocks.{layer}.pre", model.blocks[layer].pre.eps))
    merged_w, merged_b = w2 @ w1, w2 @ b1 + b2
    new_spec = spec.without_layer(layer)
    new_state = _renumber_state(state, spec.depth, layer, last)
    merged_key = "head" if last else f"blocks.{layer}.linear"
    new_state[f"{merged_key}.weight"], new_state[f"{merged_key}.bias"] = merged_w, merged_b
    return _model_from_state(new_spec, new_state, model)


def _renumber_state(state: dict[str, torch.Tensor], depth: int, layer: int, last: bool) -> dict[str, torch.Tensor]:
    """State of the blocks that survive unchanged, renumbered for the shallower network."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("head."):
            out[key] = value
            continue
        _, index, module, name = key.split(".", 3)
        i = int(index)
        if i < layer or (i == layer and module == "pre" and not last):
            out[key] = value  # blocks before the layer, and the pre-layer the merged block keeps
        elif i > layer + 1:
            out[f"blocks.{i - 1}.{module}.{name}"] = value
    return out
