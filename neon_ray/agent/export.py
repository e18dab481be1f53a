"""The trained policy in a format that cannot run code: `policy.json` + `policy.pt`.

RLlib checkpoints hold pickles (`class_and_ctor_args.pkl`, `module_state.pkl`, ...): loading
one runs whatever it contains, so neon-ray never loads them to APPLY an agent. Training writes,
next to every checkpoint it keeps (RUN/checkpoints/iter_N/), the policy alone:

    policy.json   {"format": "neon-ray-policy", "version": 1, "algo": "a2c", "module": ...,
                   "observation_size": 27, "num_actions": 5,
                   "model_config": {"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh",
                                    "vf_share_layers": false},
                   "weights": "policy.pt", "weights_sha256": "..."}
    policy.pt     the RLModule's torch state_dict (tensors only)

Loading rebuilds the module from code this project chooses (RLlib's default PPO torch RLModule,
which A2C and PPO both train), never from the file: the JSON gives only numbers, names from a
fixed list and booleans; the weights are read with `torch.load(..., weights_only=True)`, which
refuses anything but tensors and plain containers, after their SHA-256 matched the JSON.

    export_policy(module, "RUN/checkpoints/iter_000010", algo="a2c")   # what training does
    module, spec = read_policy("RUN/checkpoints/iter_000010")          # what prune does
    module, spec = read_policy("s3://bucket/run/checkpoints/iter_000010")   # the same, by URI

Reading (and writing) also takes a URI of any filesystem pyarrow opens (see `runtime.files`):
each file is read whole in one request, and the checksum is taken of the very bytes loaded.

`export_rllib_checkpoint(checkpoint_dir, algo)` adds the export to an RLlib checkpoint written
before this format existed. It unpickles that checkpoint: use it on checkpoints you trust only.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from neon_ray.errors import CheckpointError, NeonRayError
from neon_ray.runtime.files import (
    Location, atomic_write_bytes, atomic_write_text, display, is_dir, is_file, is_uri, join, read_bytes,
)

POLICY_FORMAT = "neon-ray-policy"
POLICY_VERSION = 1
SPEC_FILE = "policy.json"
WEIGHTS_FILE = "policy.pt"
ALGOS = ("a2c", "ppo")
"""The algorithms neon-ray trains (see algos.py), so the ones a policy may come from."""
# Where an RLlib algorithm checkpoint keeps the trained module.
POLICY_SUBDIR = Path("learner_group", "learner", "rl_module", "default_policy")
# The one RLModule class neon-ray's A2C and PPO train (PPOConfig's default for torch).
MODULE_NAME = "DefaultPPOTorchRLModule"
# model_config keys a policy may carry, with their kinds; anything else is refused.
POLICY_ACTIVATIONS = ("tanh", "relu", "swish", "silu", "elu", "linear", "sigmoid")
_HIDDEN_KEYS = ("fcnet_hiddens", "head_fcnet_hiddens")
_ACTIVATION_KEYS = ("fcnet_activation", "head_fcnet_activation")
_BOOL_KEYS = ("vf_share_layers", "fcnet_use_layernorm", "head_fcnet_use_layernorm")
MODEL_CONFIG_KEYS = _HIDDEN_KEYS + _ACTIVATION_KEYS + _BOOL_KEYS
# Bounds that keep a hostile file from asking for absurd allocations.
MAX_WIDTH, MAX_LAYERS, MAX_OBS, MAX_ACTIONS = 1 << 16, 64, 1 << 20, 1 << 16


def module_class():
    """The RLModule class every exported policy is rebuilt as."""
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule

    return DefaultPPOTorchRLModule


# ---------------------------------------------------------------------------- writing


def policy_spec(module, algo: str) -> dict:
    """The JSON description of `module` (a trained RLModule of neon-ray's A2C or PPO)."""
    cls = module_class()
    if type(module) is not cls:
        raise NeonRayError(f"cannot export a {type(module).__name__}: neon-ray exports {MODULE_NAME} policies only")
    if algo not in ALGOS:
        raise NeonRayError(f"cannot export a policy of algorithm {algo!r}; expected one of {list(ALGOS)}")
    obs, act = module.observation_space, module.action_space
    if not isinstance(obs, gym.spaces.Box) or len(obs.shape) != 1 or not isinstance(act, gym.spaces.Discrete):
        raise NeonRayError(f"cannot export a policy over {obs} -> {act}: expected a 1-D Box -> Discrete")
    config = dict(module.model_config or {})
    unknown = sorted(set(config) - set(MODEL_CONFIG_KEYS))
    if unknown:
        raise NeonRayError(f"cannot export the policy: its model_config has keys {unknown} the export does not describe")
    spec = {
        "format": POLICY_FORMAT, "version": POLICY_VERSION, "algo": algo, "module": MODULE_NAME,
        "observation_size": int(obs.shape[0]), "num_actions": int(act.n),
        "model_config": json.loads(json.dumps(config)), "weights": WEIGHTS_FILE,
    }
    _check_spec(spec, "policy export")
    return spec


def export_policy(module, out_dir: Location, algo: str) -> Location:
    """Write `out_dir/policy.pt` then `out_dir/policy.json` (the JSON last: it marks a complete export)."""
    spec = policy_spec(module, algo)
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    return write_export(spec, state, out_dir)


def write_export(spec: dict, state: dict[str, torch.Tensor], out_dir: Location) -> Location:
    """Write an export from a spec (see policy_spec) and a state_dict of tensors."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    weights = buffer.getvalue()
    atomic_write_bytes(join(out_dir, WEIGHTS_FILE), weights)
    doc = {**spec, "weights_sha256": _sha256(weights)}
    atomic_write_text(join(out_dir, SPEC_FILE), json.dumps(doc, indent=1, sort_keys=True))
    return _folder(out_dir)


def export_from_algo(algo, out_dir: Location, algo_name: str) -> Location:
    """Export the learner's policy of a running RLlib Algorithm (what its checkpoints hold)."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    def fetch(learner):
        module = learner.module[DEFAULT_MODULE_ID]
        return policy_spec(module, algo_name), {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    spec, state = next(iter(algo.learner_group.foreach_learner(fetch))).get()
    return write_export(spec, state, out_dir)


def export_rllib_checkpoint(checkpoint_dir: str | Path, algo: str) -> Path:
    """Add policy.json + policy.pt to an `algo.save_to_path()` checkpoint. TRUSTED CHECKPOINTS ONLY:
    this unpickles the RLlib checkpoint, which runs whatever code it contains."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    ckpt = Path(checkpoint_dir).expanduser().absolute()
    module_dir = ckpt / POLICY_SUBDIR
    if not module_dir.is_dir():
        raise CheckpointError(f"{ckpt} is not an RLlib algorithm checkpoint: {POLICY_SUBDIR} is missing")
    return export_policy(RLModule.from_checkpoint(str(module_dir)), ckpt, algo)


# ---------------------------------------------------------------------------- reading


def _folder(path: Location) -> Location:
    return str(path) if is_uri(path) else Path(path).expanduser().absolute()


def has_export(path: Location) -> bool:
    return is_file(join(_folder(path), SPEC_FILE))


def read_spec(path: Location) -> dict:
    """policy.json of the export in directory `path` (a path or a URI), checked field by field."""
    folder = _folder(path)
    spec_path = join(folder, SPEC_FILE)
    shown = display(spec_path)
    try:
        if not is_file(spec_path):
            raise CheckpointError(_missing_message(folder))
        spec = json.loads(read_bytes(spec_path).decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{shown}: not a readable policy description ({exc})") from None
    _check_spec(spec, shown)
    if not isinstance(spec.get("weights_sha256"), str):
        raise CheckpointError(f"{shown}: 'weights_sha256' is missing")
    return spec


def read_policy(path: Location):
    """(RLModule in eval mode, spec) from the export in folder `path` (a path or a URI); runs no code from the files."""
    folder = _folder(path)
    spec = read_spec(folder)
    spec_shown, weights = display(join(folder, SPEC_FILE)), display(join(folder, WEIGHTS_FILE))
    data = _weights_bytes(join(folder, WEIGHTS_FILE))
    if _sha256(data) != spec["weights_sha256"]:  # before torch sees a byte of it
        raise CheckpointError(f"{weights}: contents do not match the SHA-256 in {spec_shown} "
                              "(truncated, corrupted or replaced); export the policy again")
    state = _load_state(data, weights)
    module = build_module(spec)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights} does not fit the policy {spec_shown} describes: "
                              f"{str(exc).splitlines()[0]}") from None
    module.eval()
    return module, spec


def _weights_bytes(weights: Location) -> bytes:
    try:
        if not is_file(weights):
            raise CheckpointError(f"{display(weights)} is missing ({SPEC_FILE} describes it)")
        return read_bytes(weights)
    except OSError as exc:
        raise CheckpointError(f"{display(weights)}: cannot be read ({exc})") from None


def _load_state(data: bytes, shown: str) -> dict[str, torch.Tensor]:
    """The state_dict in `data`; weights_only refuses anything but tensors and plain containers."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, EOFError, RuntimeError, ...: a file we cannot read
        raise CheckpointError(f"{shown}: not a readable tensor file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{shown}: expected a state_dict (names -> tensors)")
    return state


def build_module(spec: dict):
    """A freshly initialised module of the project's class, shaped as `spec` says."""
    obs = gym.spaces.Box(-np.inf, np.inf, shape=(spec["observation_size"],), dtype=np.float32)
    act = gym.spaces.Discrete(spec["num_actions"])
    return module_class()(observation_space=obs, action_space=act, inference_only=False,
                          model_config=dict(spec["model_config"]))


def _missing_message(folder: Location) -> str:
    rllib = is_file(join(folder, "rllib_checkpoint.json")) or is_dir(join(folder, "learner_group"))
    what = "holds an RLlib checkpoint but no" if rllib else "has no"
    return (f"{display(folder)} {what} safe policy export ({SPEC_FILE} + {WEIGHTS_FILE}). neon-ray applies agents "
            "only from this format and never unpickles RLlib checkpoints, since a tampered pickle runs arbitrary code. "
            "Runs trained with this version write it with every checkpoint; to add it to an older run that you "
            "trust, resume it (`neon-ray train --out RUN --resume`) or call "
            "neon_ray.agent.export.export_rllib_checkpoint(CHECKPOINT_DIR, ALGO)")


def _check_spec(spec: Any, where: str) -> None:
    def bad(message: str) -> CheckpointError:
        return CheckpointError(f"{where}: {message}")

    if not isinstance(spec, dict):
        raise bad("expected a JSON object")
    if spec.get("format") != POLICY_FORMAT:
        raise bad(f"format is {spec.get('format')!r}, expected {POLICY_FORMAT!r}")
    if spec.get("version") != POLICY_VERSION:
        raise bad(f"version {spec.get('version')!r} is not supported (this neon-ray reads version {POLICY_VERSION})")
    if spec.get("algo") not in ALGOS:
        raise bad(f"algo {spec.get('algo')!r} is not one of {list(ALGOS)}")
    if spec.get("module") != MODULE_NAME:
        raise bad(f"module {spec.get('module')!r} is not {MODULE_NAME!r}")
    if spec.get("weights") != WEIGHTS_FILE:
        raise bad(f"weights {spec.get('weights')!r}: expected {WEIGHTS_FILE!r}")
    for key, hi in (("observation_size", MAX_OBS), ("num_actions", MAX_ACTIONS)):
        if not _int_in(spec.get(key), 1, hi):
            raise bad(f"{key} {spec.get(key)!r} is not an integer in [1, {hi}]")
    config = spec.get("model_config")
    if not isinstance(config, dict):
        raise bad("model_config must be a JSON object")
    unknown = sorted(set(config) - set(MODEL_CONFIG_KEYS))
    if unknown:
        raise bad(f"model_config keys {unknown} are not accepted; accepted: {list(MODEL_CONFIG_KEYS)}")
    for key in _HIDDEN_KEYS:
        if key in config:
            value = config[key]
            if not isinstance(value, list) or len(value) > MAX_LAYERS or not all(_int_in(h, 1, MAX_WIDTH) for h in value):
                raise bad(f"model_config {key} {value!r}: expected at most {MAX_LAYERS} integers in [1, {MAX_WIDTH}]")
    if not config.get("fcnet_hiddens"):
        raise bad("model_config fcnet_hiddens is missing or empty")
    for key in _ACTIVATION_KEYS:
        if key in config and config[key] not in POLICY_ACTIVATIONS:
            raise bad(f"model_config {key} {config[key]!r} is not one of {list(POLICY_ACTIVATIONS)}")
    for key in _BOOL_KEYS:
        if key in config and not isinstance(config[key], bool):
            raise bad(f"model_config {key} {config[key]!r}: expected true or false")


def _int_in(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
