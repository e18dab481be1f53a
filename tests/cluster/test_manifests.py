"""cluster/ checked without a cluster: KubeRay manifests against the fields KubeRay's v1 CRDs define,
the `ray up` config through Ray's own config checks, the Dockerfile against the repository, and every
entrypoint, spec and example command they name against what exists here.

The allow-lists below hold only field paths verified in the API types they come from:
- RayCluster / RayJob: KubeRay's Go types, ray-project/kuberay ray-operator/apis/ray/v1/
  raycluster_types.go (RayClusterSpec, AuthOptions, AutoscalerOptions, HeadGroupSpec,
  WorkerGroupSpec) and rayjob_types.go (RayJobSpec), by their json tags; authOptions since
  KubeRay v1.5.1.
- Pod templates and the PersistentVolumeClaim: Kubernetes core/v1 (PodSpec, PodSecurityContext,
  Container, ResourceRequirements, VolumeMount, Volume, PersistentVolumeClaimVolumeSource,
  PersistentVolumeClaimSpec).
A field outside them is a typo or a field this KubeRay does not know, and the operator drops it
without a word; add a path here only after checking it in those types.
"""
from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.scripts.scripts import start as ray_start

from neon_ray.cli import build_parser
from neon_ray.pipeline import load_spec

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
MANIFESTS = ("kuberay-raycluster.yaml", "kuberay-rayjob.yaml")
SHARED = "/mnt/shared"

POD_TEMPLATE = {  # core/v1 PodTemplateSpec
    "spec.securityContext.fsGroup",
    "spec.containers[].name", "spec.containers[].image", "spec.containers[].imagePullPolicy",
    "spec.containers[].env[].name", "spec.containers[].env[].value",
    "spec.containers[].resources.requests.cpu", "spec.containers[].resources.requests.memory",
    "spec.containers[].resources.limits.cpu", "spec.containers[].resources.limits.memory",
    "spec.containers[].volumeMounts[].name", "spec.containers[].volumeMounts[].mountPath",
    "spec.volumes[].name", "spec.volumes[].persistentVolumeClaim.claimName",
}
RAY_CLUSTER_SPEC = {  # kuberay RayClusterSpec
    "rayVersion", "authOptions.mode", "authOptions.secretName", "enableInTreeAutoscaling",
    "autoscalerOptions.idleTimeoutSeconds", "autoscalerOptions.upscalingMode",
    "headGroupSpec.rayStartParams", "headGroupSpec.serviceType", "headGroupSpec.template",
    "workerGroupSpecs[].groupName", "workerGroupSpecs[].replicas", "workerGroupSpecs[].minReplicas",
    "workerGroupSpecs[].maxReplicas", "workerGroupSpecs[].idleTimeoutSeconds",
    "workerGroupSpecs[].rayStartParams", "workerGroupSpecs[].template",
}
RAY_JOB_SPEC = {  # kuberay RayJobSpec, besides rayClusterSpec
    "entrypoint", "runtimeEnvYAML", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished",
    "activeDeadlineSeconds", "backoffLimit", "submissionMode",
}
PVC_SPEC = {"accessModes", "resources.requests.storage", "storageClassName"}  # core/v1 PersistentVolumeClaimSpec
FREE_MAPS = ("rayStartParams",)
"""Fields whose keys are free (here: `ray start` options, checked separately)."""


def _with_templates(paths: set[str]) -> set[str]:
    return {p for p in paths if not p.endswith("template")} | {
        f"{p}.{pod}" for p in paths if p.endswith("template") for pod in POD_TEMPLATE}


def allowed(kind: str) -> set[str]:
    top = {"apiVersion", "kind", "metadata.name"}
    cluster = _with_templates(RAY_CLUSTER_SPEC)
    return top | {
        "PersistentVolumeClaim": {f"spec.{p}" for p in PVC_SPEC},
        "RayCluster": {f"spec.{p}" for p in cluster},
        "RayJob": {f"spec.{p}" for p in RAY_JOB_SPEC} | {f"spec.rayClusterSpec.{p}" for p in cluster},
    }[kind]


def field_paths(node, prefix: str = ""):
    """Dotted paths of the leaves (list items as `[]`); free maps count as one leaf."""
    if prefix.rsplit(".", 1)[-1] in FREE_MAPS:
        yield prefix
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from field_paths(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(node, list) and node and all(isinstance(item, dict) for item in node):
        for item in node:
            yield from field_paths(item, f"{prefix}[]")
    else:
        yield prefix


def documents(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((CLUSTER / name).read_text()) if doc]


def cluster_specs(doc: dict) -> list[dict]:
    if doc["kind"] == "RayJob":
        return [doc["spec"]["rayClusterSpec"]]
    return [doc["spec"]] if doc["kind"] == "RayCluster" else []


def pod_specs(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]


def dockerfile() -> str:
    return (CLUSTER / "Dockerfile").read_text()


def constraint_pin(package: str) -> str:
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    return pins[package]


# ------------------------------------------------------------------------------------------------
# KubeRay manifests


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_manifest_field_is_one_kuberay_v1_or_kubernetes_defines(name):
    for doc in documents(name):
        assert doc["apiVersion"] == {"PersistentVolumeClaim": "v1"}.get(doc["kind"], "ray.io/v1"), doc["kind"]
        unknown = sorted(set(field_paths(doc)) - allowed(doc["kind"]))
        assert not unknown, f"{name}: {doc['kind']} fields not in the verified allow-list: {unknown}"


@pytest.mark.parametrize("name", MANIFESTS)
def test_ray_start_params_are_ray_start_options(name):
    options = {opt.lstrip("-") for param in ray_start.params for opt in param.opts}
    for doc in documents(name):
        for spec in cluster_specs(doc):
            groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
            unknown = {key for group in groups for key in group["rayStartParams"]} - options
            assert not unknown, f"{name}: not `ray start` options: {sorted(unknown)}"


@pytest.mark.parametrize("name", MANIFESTS)
def test_token_auth_and_autoscaling_are_on_and_the_replica_range_is_real(name):
    specs = [spec for doc in documents(name) for spec in cluster_specs(doc)]
    assert specs
    for spec in specs:
        assert spec["authOptions"]["mode"] == "token"
        # authOptions needs Ray 2.52+ and the cluster must run the Ray the project pins
        assert spec["rayVersion"] == "2.60.0"
        assert spec["enableInTreeAutoscaling"] is True
        for group in spec["workerGroupSpecs"]:
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
            assert group["minReplicas"] < group["maxReplicas"], group["groupName"]


def _entrypoint_paths(doc: dict) -> list[str]:
    words = shlex.split(doc["spec"]["entrypoint"])
    return [words[i + 1] for i, word in enumerate(words) if word in ("--out", "--data-dir")]


@pytest.mark.parametrize("name", MANIFESTS)
def test_the_shared_volume_is_a_claim_of_the_same_file_mounted_everywhere_outputs_go(name):
    docs = documents(name)
    claims = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert claims, f"{name} defines no PersistentVolumeClaim"
    for claim in claims.values():
        assert "ReadWriteMany" in claim["spec"]["accessModes"]  # every pod writes to it
    for doc in docs:
        for spec in cluster_specs(doc):
            for pod in pod_specs(spec):
                volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
                assert set(volumes.values()) <= set(claims)
                for container in pod["containers"]:
                    mounts = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in volumes}
                    assert SHARED in mounts, container["name"]
        if doc["kind"] == "RayJob":
            assert _entrypoint_paths(doc) and all(p.startswith(SHARED + "/") for p in _entrypoint_paths(doc))


def test_both_manifests_claim_the_same_volume_the_same_way():
    claims = [[d for d in documents(name) if d["kind"] == "PersistentVolumeClaim"] for name in MANIFESTS]
    assert claims[0] == claims[1]


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_container_runs_the_image_the_dockerfile_builds(name):
    tag = re.search(r"docker build -f cluster/Dockerfile -t (\S+) \.", dockerfile()).group(1)
    images = {c["image"] for doc in documents(name) for spec in cluster_specs(doc)
              for pod in pod_specs(spec) for c in pod["containers"]}
    assert images == {tag}


def test_the_rayjob_entrypoint_names_a_module_and_a_spec_that_exist_and_load():
    job = next(d for d in documents("kuberay-rayjob.yaml") if d["kind"] == "RayJob")
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:3] == ["python", "-m", "jobs.pipeline"]
    assert (REPO / "jobs" / "pipeline.py").is_file()
    args = build_parser().parse_args(["pipeline", *words[3:]])  # jobs.pipeline is `neon-ray pipeline`
    workdir = re.search(r"^WORKDIR (\S+)$", dockerfile(), re.M).group(1)
    spec = REPO / Path(args.spec).relative_to(workdir)  # the image holds the repository at WORKDIR
    assert spec.is_file()
    load_spec(spec, out=args.out, data_dir=args.data_dir)


def test_the_rayjob_runtime_env_is_the_shipped_one():
    job = next(d for d in documents("kuberay-rayjob.yaml") if d["kind"] == "RayJob")
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"]) == yaml.safe_load((CLUSTER / "runtime-env.yaml").read_text())


# ------------------------------------------------------------------------------------------------
# Example commands in the headers: they parse, name existing specs and would pass the pipeline's checks


def example_submits(name: str) -> list[list[str]]:
    """The `neon-ray submit` commands of a file's header comment (continuation lines joined)."""
    text = re.sub(r"\\\n#\s*", " ", (CLUSTER / name).read_text())
    return [shlex.split(match) for match in re.findall(r"^#\s+neon-ray (submit .*)$", text, re.M)]


@pytest.mark.parametrize("name", ["kuberay-raycluster.yaml", "local-cluster.yaml"])
def test_example_submit_commands_work(name):
    commands = example_submits(name)
    assert commands
    for words in commands:
        args = build_parser().parse_args(words)
        assert args.func.__module__ == "neon_ray.cli.submit_cmd"
        [spec] = args.target
        assert (REPO / spec).is_file()
        cfg = load_spec(REPO / spec, out=args.out, data_dir=args.data_dir)
        assert Path(cfg.out).is_absolute() and cfg.out.startswith(SHARED + "/")
        assert args.data_dir.startswith(SHARED + "/")


# ------------------------------------------------------------------------------------------------
# The `ray up` config


def test_local_cluster_config_passes_rays_own_checks():
    config = yaml.safe_load((CLUSTER / "local-cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs before it connects


def test_local_cluster_creates_the_token_on_the_head_and_distributes_it():
    config = yaml.safe_load((CLUSTER / "local-cluster.yaml").read_text())
    assert any("ray get-auth-token --generate" in c and "chmod 600 ~/.ray/auth_token" in c
               for c in config["head_setup_commands"])
    assert "~/.ray/auth_token" in config["cluster_synced_files"]
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if " start " in c]
    assert len(starts) == 2 and all(c.startswith("RAY_AUTH_MODE=token ") for c in starts)
    assert "--dashboard-host=127.0.0.1" in starts[0]


def test_local_cluster_installs_this_repository_pinned():
    config = yaml.safe_load((CLUSTER / "local-cluster.yaml").read_text())
    assert config["file_mounts"] == {"~/neon-ray": "."} and ".gitignore" in config["rsync_filter"]
    setup = "\n".join(config["setup_commands"])
    assert f"torch=={constraint_pin('torch')}" in setup
    assert "cd ~/neon-ray && ~/neon-ray-env/bin/pip install -q -c constraints.txt ." in setup
    assert "test -w /mnt/shared" in setup


# ------------------------------------------------------------------------------------------------
# Dockerfile and packaging


def copy_sources() -> list[str]:
    return [src for line in dockerfile().splitlines() if line.startswith("COPY ")
            for src in line.split()[1:-1]]


def test_the_dockerfile_copies_what_exists_and_installs_pinned():
    assert all((REPO / src).exists() for src in copy_sources())
    assert {"jobs", "neon_ray", "constraints.txt", "pyproject.toml"} <= set(copy_sources())
    assert f"torch=={constraint_pin('torch')}" in dockerfile()
    assert "pip install --no-cache-dir -c constraints.txt ." in dockerfile()
    assert re.search(r"^FROM python:3\.11", dockerfile(), re.M)  # the Python the project is tested on
    imported = re.search(r'python -c "import ([\w., ]+);', dockerfile()).group(1)
    for module in (m.strip() for m in imported.split(",")):
        path = REPO / module.replace(".", "/")
        assert module == "torch" or path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), module


def test_pip_install_of_the_image_sources_installs_jobs_and_its_specs(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for src in copy_sources():  # exactly what the image's `pip install .` sees
        (shutil.copytree if (REPO / src).is_dir() else shutil.copy)(REPO / src, source / src)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "wheel"), str(source)], check=True, capture_output=True, timeout=300)
    [wheel] = (tmp_path / "wheel").glob("neon_ray-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    specs = {f"jobs/specs/{p.name}" for p in (REPO / "jobs" / "specs").glob("*.json")}
    assert {"jobs/__init__.py", "jobs/pipeline.py", "neon_ray/cli/__init__.py"} | specs <= names


def test_every_environment_variable_the_cluster_files_set_is_read_by_someone():
    """Ray's and Python's own, or one that neon-ray's code reads (no settings that do nothing)."""
    names = set(yaml.safe_load((CLUSTER / "runtime-env.yaml").read_text())["env_vars"])
    names |= set(re.findall(r"^\s+(\w+)=", dockerfile(), re.M)) | set(re.findall(r"^ENV (\w+)=", dockerfile(), re.M))
    code = "\n".join(p.read_text() for d in ("neon_ray", "jobs") for p in (REPO / d).rglob("*.py"))
    unread = {n for n in names if not n.startswith(("RAY_", "PYTHON")) and n not in code}
    assert names and not unread, unread
