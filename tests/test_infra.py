"""Offline checks of infra/: the Terraform parses (python-hcl2) and declares a CPU pool and a tainted GPU pool
with consistent variables; the project Dockerfile pins torch and sam2 like the dev environment, never installs
torchvision and runs as a non-root user; the build context and the kind config are what the docs say."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import hcl2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
GKE = INFRA / "terraform" / "gke"
HCL_OPTS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


# --------------------------------------------------------------------------------------------------- terraform


def load_tf(folder: Path) -> dict[str, list]:
    """Merge every top-level block of the ``.tf`` files in ``folder`` (a parse error fails the test)."""
    merged: dict[str, list] = {}
    files = sorted(folder.glob("*.tf"))
    assert files, f"no .tf files in {folder}"
    for path in files:
        with open(path) as f:
            try:
                doc = hcl2.load(f, serialization_options=HCL_OPTS)
            except Exception as err:  # lark raises several error types; name the file either way
                pytest.fail(f"{path.name} in {folder.name}/ does not parse as HCL2: {err!r}")
        for key, blocks in doc.items():
            merged.setdefault(key, []).extend(blocks)
    return merged


def resources(tf: dict, rtype: str) -> dict[str, dict]:
    return {name: body for block in tf.get("resource", []) for t, named in block.items() if t == rtype
            for name, body in named.items()}


@pytest.fixture(scope="module")
def gke() -> dict[str, list]:
    return load_tf(GKE)


@pytest.fixture(scope="module")
def variables(gke) -> dict[str, dict]:
    return {k: v for block in gke["variable"] for k, v in block.items()}


def test_cluster_has_a_cpu_pool_and_a_tainted_autoscaled_gpu_pool(gke, variables):
    (cluster,) = resources(gke, "google_container_cluster").values()
    assert cluster["remove_default_node_pool"] is True
    # Dataplane V2 is what enforces the NetworkPolicies in manifests/.
    assert cluster["datapath_provider"] == "ADVANCED_DATAPATH"
    assert cluster["workload_identity_config"][0]["workload_pool"] == "${var.project_id}.svc.id.goog"

    pools = resources(gke, "google_container_node_pool")
    assert set(pools) == {"cpu", "gpu"}
    for pool in pools.values():
        assert pool["cluster"] == "${google_container_cluster.main.id}"
        assert pool["node_config"][0]["workload_metadata_config"][0]["mode"] == "GKE_METADATA"

    cpu = pools["cpu"]["node_config"][0]
    assert "taint" not in cpu and "guest_accelerator" not in cpu

    gpu_pool = pools["gpu"]
    gpu = gpu_pool["node_config"][0]
    (accel,) = gpu["guest_accelerator"]
    assert accel["type"] == "${var.gpu_type}" and accel["count"] == "${var.gpus_per_node}"
    assert accel["gpu_driver_installation_config"][0]["gpu_driver_version"] in ("DEFAULT", "LATEST")
    (taint,) = gpu["taint"]
    resolved = {k: resolve(v, variables) for k, v in taint.items()}
    assert resolved == {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
    assert resolve(gpu_pool["autoscaling"][0]["min_node_count"], variables) == 0  # GPU pool scales to zero
    assert variables["gpu_type"]["default"].startswith("nvidia-")


def test_control_plane_is_private_or_limited_to_authorized_networks(gke, variables):
    (cluster,) = resources(gke, "google_container_cluster").values()
    (private,) = cluster["private_cluster_config"]
    assert private["enable_private_nodes"] is True
    assert private["enable_private_endpoint"] == "${var.private_endpoint}"
    assert variables["private_endpoint"]["type"] in ("bool", "${bool}")
    assert private["master_ipv4_cidr_block"].startswith("${var.") or private["master_ipv4_cidr_block"].endswith("/28")
    # The public endpoint (if any) answers only the listed networks; none by default, never Google's public ranges.
    (authorized,) = cluster["master_authorized_networks_config"]
    assert authorized["gcp_public_cidrs_access_enabled"] is False
    (blocks,) = [d["cidr_blocks"] for d in authorized["dynamic"]]
    assert blocks["for_each"] == "${var.master_authorized_networks}"
    nets = variables["master_authorized_networks"]
    assert nets["default"] == [] and "/0" in nets["validation"][0]["condition"]
    example = (GKE / "terraform.tfvars.example").read_text()
    assert "master_authorized_networks" in example and "0.0.0.0/0" not in example
    # Private nodes pull public images (MinIO, Postgres) through Cloud NAT on the cluster's network.
    (router,) = resources(gke, "google_compute_router").values()
    (nat,) = resources(gke, "google_compute_router_nat").values()
    assert router["network"] == "${var.network}" and nat["router"] == "${google_compute_router.nat.name}"


def resolve(expr, variables: dict[str, dict]):
    """Value of a literal or of ``${var.name[.field]}`` from the variable's default."""
    m = re.fullmatch(r"\$\{var\.(\w+)((?:\.\w+)*)\}", expr) if isinstance(expr, str) else None
    if not m:
        return expr
    value = variables[m.group(1)]["default"]
    for field in filter(None, m.group(2).split(".")):
        value = value[field]
    return value


def test_every_variable_used_is_declared_documented_and_typed(gke, variables):
    text = "\n".join(p.read_text() for p in GKE.glob("*.tf"))
    used = set(re.findall(r"\bvar\.(\w+)", text))
    assert used - set(variables) == set(), "variables used but not declared"
    assert set(variables) - used == set(), "variables declared but never used"
    for name, spec in variables.items():
        assert spec.get("description"), f"variable {name} has no description"
        assert spec.get("type"), f"variable {name} has no type"
    required = {name for name, spec in variables.items() if "default" not in spec}
    assert required == {"project_id"}
    example = (GKE / "terraform.tfvars.example").read_text()
    assert all(f"{name} " in example or f"{name}=" in example for name in required)
    readme = (INFRA / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in variables), "README misses a variable"


def test_outputs_are_documented_and_reference_real_resources(gke):
    outputs = {k: v for block in gke["output"] for k, v in block.items()}
    assert {"cluster_name", "get_credentials", "image_repository", "gpu_node_selector", "gpu_taint"} <= set(outputs)
    declared = {f"{t}.{n}" for block in gke["resource"] for t, named in block.items() for n in named}
    for name, spec in outputs.items():
        assert spec.get("description"), f"output {name} has no description"
        for ref in re.findall(r"\b(google_\w+\.\w+)\.", str(spec["value"])):
            assert ref in declared, f"output {name} references undeclared {ref}"


def test_provider_is_pinned(gke):
    (tf_block,) = gke["terraform"]
    google = tf_block["required_providers"][0]["google"]
    assert google["source"] == "hashicorp/google" and google["version"].startswith("~>")


def test_broken_terraform_fails_to_parse(tmp_path):
    (tmp_path / "main.tf").write_text('resource "google_container_node_pool" "gpu" {\n  name = "gpu"\n')
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        load_tf(tmp_path)


# -------------------------------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions((INFRA / "Dockerfile").read_text())


def build_args(instructions) -> dict[str, str]:
    return dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)


def pip_installs(instructions) -> list[list[str]]:
    """Argument lists of every ``pip install`` in a RUN, with ${ARG} defaults substituted."""
    args = build_args(instructions)
    out = []
    for op, rest in instructions:
        if op != "RUN":
            continue
        tokens = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest))
        cmds, cur = [], []
        for tok in tokens + ["&&"]:
            if tok in ("&&", ";", "||"):
                cmds.append(cur)
                cur = []
            else:
                cur.append(tok)
        for words in cmds:
            words = [w for w in words if "=" not in w or w.startswith("-") or "==" in w]  # drop VAR=value prefixes
            if words[:2] == ["pip", "install"] or words[1:3] == ["-m", "pip"] and words[3:4] == ["install"]:
                out.append(words[words.index("install") + 1:])
    return out


def test_dockerfile_never_installs_torchvision_and_checks_for_it(dockerfile):
    installs = pip_installs(dockerfile)
    assert installs, "no pip install found"
    for words in installs:
        assert not any(w.lower().startswith("torchvision") for w in words), words
    assert any(op == "RUN" and "find_spec('torchvision')" in rest for op, rest in dockerfile)


def test_dockerfile_pins_torch_and_sam2_like_the_dev_environment(dockerfile):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    torch_pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch=="))
    installs = pip_installs(dockerfile)
    assert any(torch_pin in words for words in installs), (torch_pin, installs)
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    sam2_pin = re.search(r"sam2==[\w.]+", setup).group(0)
    sam2 = next(words for words in installs if any(w.startswith("sam2==") for w in words))
    assert sam2_pin in sam2 and "--no-deps" in sam2 and "--no-build-isolation" in sam2
    project = next(words for words in installs if "." in words)
    assert "-c" in project, "the project must install under the pinned constraints"


def test_dockerfile_base_is_python_311_slim_and_runs_as_non_root(dockerfile):
    args = build_args(dockerfile)
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest).split()[0]
             for op, rest in dockerfile if op == "FROM"]
    assert len(froms) == 2
    for image in froms:
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image
    final = [i for i, (op, _) in enumerate(dockerfile) if op == "FROM"][-1]
    users = [rest for op, rest in dockerfile[final:] if op == "USER"]
    assert users, "final stage has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid so runAsNonRoot can verify it"
    last_user = max(i for i, (op, _) in enumerate(dockerfile) if op == "USER")
    assert all(op != "RUN" for op, _ in dockerfile[last_user:]), "RUN after USER would run as the app user"


def test_manifests_run_the_image_as_its_user(dockerfile):
    uid = int([rest for op, rest in dockerfile if op == "USER"][-1].split(":")[0])
    isvc = yaml.safe_load((ROOT / "manifests" / "base" / "serving" / "inference-service.yaml").read_text())
    mlflow = next(d for d in yaml.safe_load_all((ROOT / "manifests" / "base" / "mlflow" / "mlflow.yaml").read_text())
                  if d["kind"] == "Deployment")
    assert isvc["spec"]["predictor"]["securityContext"]["runAsUser"] == uid
    assert mlflow["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pat in patterns:
        negate = pat.startswith("!")
        body = pat[1:] if negate else pat
        body = body.strip("/")
        rx = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        rx = rx.replace(r"\?", "[^/]")
        if any(re.fullmatch(rx, p) for p in prefixes):
            excluded = not negate
    return excluded


def test_build_context_has_what_copy_needs_and_nothing_private(dockerfile):
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    sources = []
    for op, rest in dockerfile:
        if op == "COPY" and "--from=" not in rest:
            sources += rest.split()[:-1]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY source {src} missing"
        assert not dockerignore_excludes(patterns, src), f"COPY source {src} is excluded by .dockerignore"
    assert not dockerignore_excludes(patterns, "reviosa/cli/__init__.py")
    for private in (".venv/bin/python", ".git/config", "data/train/x.jpg", "tests/test_infra.py", "runs/a",
                    "reviosa/__pycache__/x.pyc", ".reviosa/services/storage.yaml"):
        assert dockerignore_excludes(patterns, private), private


# -------------------------------------------------------------------------------------------------------- kind


def test_kind_config_is_a_cpu_cluster_matching_the_docs():
    cfg = yaml.safe_load((INFRA / "kind.yaml").read_text())
    assert cfg["kind"] == "Cluster" and cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [n["role"] for n in cfg["nodes"]]
    assert roles.count("control-plane") == 1 and roles.count("worker") >= 1
    # The default CNI (kindnet) is the one that enforces the NetworkPolicies.
    assert cfg.get("networking", {}).get("disableDefaultCNI", False) is False
    load = f"kind load docker-image ghcr.io/reviosa/reviosa:0.1.0 --name {cfg['name']}"
    assert load in (INFRA / "README.md").read_text()
    assert load in (ROOT / "manifests" / "overlays" / "local" / "kustomization.yaml").read_text()
