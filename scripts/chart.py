"""Validates the Helm chart charts/streamjob-operator with no helm binary and
no cluster. Run it through scripts/chart.sh, which provides the venv.

Steps, one line each; the first failing one ends the run with exit 1:
  1. crds: the chart's crds/streamjob.yaml equals crds/streamjob.yaml (crdgen's
     output), validates --strict as an apiextensions.k8s.io/v1
     CustomResourceDefinition, has the expected group, names and storage
     version, and is the chart's only CRD as Helm loads it.
  2. lint: Helm's linter, strict (warnings fail), with the default values and
     each ci/*-values.yaml.
  3. render: the templates with the default values, each ci/*-values.yaml and
     an inline variant; every object validates --strict against Kubernetes'
     schemas (kubernetes-validate's Python API, which is what its CLI's
     --strict runs; a kind with no schema fails here, where the CLI only
     warns), and the Deployment, Service, ServiceAccount and RBAC say what the
     chart promises (arguments, single replica, least privilege); the Grafana
     dashboard's ConfigMap holds dashboards/streamjob.json, and the PodMonitor
     (a Prometheus-operator kind, with no schema to validate against) scrapes
     the jobs' control port and the operator's metrics port.
  4. schema: rendering with each of INVALID_VALUES is refused by
     values.schema.json.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv

CHART = "charts/streamjob-operator"
CRD = "crds/streamjob.yaml"
CHART_CRD = f"{CHART}/crds/streamjob.yaml"
DASHBOARD = f"{CHART}/dashboards/streamjob.json"
# Kinds of other projects' CRDs: no schema in kubernetes-validate, so
# check_monitoring checks what the chart renders of them.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "PodMonitor")}
# The newest Kubernetes kubernetes-validate ships schemas for; the operator's
# k8s-openapi API level (1.35) is checked as well.
KUBE_VERSIONS = ["1.37.0", "1.35.0"]
RELEASE = "streamjob-operator"
NAMESPACE = "streamjob-system"

# Values the schema must reject, each with the reason.
INVALID_VALUES = [
    ("logFormat: xml", "logFormat is text or json"),
    ("logLevel: verbose", "logLevel is error, warn, info, debug or trace"),
    ("watchNamespaces: [Bad_Namespace]", "namespaces are DNS-1123 labels"),
    ("watchNamespaces: a", "watchNamespaces is a list"),
    ("metricsPort: 0", "metricsPort is 1..65535"),
    ("metricsPort: 65536", "metricsPort is 1..65535"),
    ("metricsPort: '8080'", "metricsPort is an integer"),
    ("replicaCount: 2", "the operator is a single replica: no replicaCount"),
    ("image: {repository: x, tag: '', pullPolicy: Sometimes}", "pullPolicy enum"),
    ("serviceAccount: {create: true, nam: x}", "no unknown keys in serviceAccount"),
    ("networkPolicy: {enabled: true, extraControlClients: [{}]}", "an empty peer admits everyone"),
    ("networkPolicy: {enable: true}", "no unknown keys in networkPolicy"),
    ("podMonitor: {enabled: true, interval: 30}", "podMonitor.interval is a duration"),
    ("grafana: {dashboard: {enabled: true, label: '', labelValue: '1'}}", "the sidecar needs a label"),
]

# The whole ClusterRole: (apiGroup, resource) -> verbs. Anything more fails.
EXPECTED_RULES = {
    ("streamjob.io", "streamjobs"): {"get", "list", "watch", "patch", "update"},
    ("streamjob.io", "streamjobs/status"): {"get", "patch", "update"},
    ("streamjob.io", "streamjobs/finalizers"): {"update"},
    ("apps", "statefulsets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch", "delete"},
    # Each job's control token: made once, read back for the operator's calls.
    ("", "secrets"): {"get", "create"},
    # Each job's NetworkPolicy, applied server-side.
    ("networking.k8s.io", "networkpolicies"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "events"): {"create", "patch"},
}


class Failure(Exception):
    pass


def step(n: int, total: int, text: str) -> None:
    print(f"[chart {n}/{total}] {text}", flush=True)


def load_values_file(path: str) -> dict[str, Any]:
    with open(path) as f:
        return helm.values_from_yaml(f.read())


def validate_strict(docs: list[tuple[str, dict]]) -> list[str]:
    """kubernetes-validate --strict on each (source, object); a kind it has no
    schema for is an error here (its CLI only warns)."""
    errors = []
    for source, obj in docs:
        if (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_KINDS:
            continue
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        for version in KUBE_VERSIONS:
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(root)"
                errors.append(f"{source}: {name} (Kubernetes {version}): {path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                errors.append(f"{source}: {e.message}")
    return errors


def parse_docs(source: str, text: str) -> list[tuple[str, dict]]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as e:
        raise Failure(f"{source} is not valid YAML: {e}") from e
    for d in docs:
        if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
            raise Failure(f"{source}: a document without apiVersion and kind: {str(d)[:200]}")
    return [(source, d) for d in docs]


def check_crd() -> str:
    for path in (CRD, CHART_CRD):
        if not os.path.isfile(path):
            raise Failure(f"{path} is missing")
    with open(CRD, "rb") as a, open(CHART_CRD, "rb") as b:
        if a.read() != b.read():
            raise Failure(f"{CHART_CRD} differs from {CRD}: run scripts/crdgen.sh")
    with open(CRD) as f:
        docs = parse_docs(CRD, f.read())
    if len(docs) != 1:
        raise Failure(f"{CRD}: expected one document, found {len(docs)}")
    errors = validate_strict(docs)
    if errors:
        raise Failure("the CRD does not validate:\n  " + "\n  ".join(errors))
    crd = docs[0][1]
    spec = crd["spec"]
    problems = []
    if crd["apiVersion"] != "apiextensions.k8s.io/v1" or crd["kind"] != "CustomResourceDefinition":
        problems.append("not an apiextensions.k8s.io/v1 CustomResourceDefinition")
    if crd["metadata"].get("name") != "streamjobs.streamjob.io":
        problems.append("metadata.name is not streamjobs.streamjob.io")
    want = {"group": "streamjob.io", "scope": "Namespaced"}
    problems += [f"spec.{k} is not {v}" for k, v in want.items() if spec.get(k) != v]
    names = spec.get("names", {})
    for k, v in {"kind": "StreamJob", "plural": "streamjobs", "singular": "streamjob"}.items():
        if names.get(k) != v:
            problems.append(f"spec.names.{k} is not {v}")
    if "sj" not in names.get("shortNames", []):
        problems.append("spec.names.shortNames lacks sj")
    storage = [v["name"] for v in spec.get("versions", []) if v.get("storage")]
    if storage != ["v1alpha1"]:
        problems.append(f"the storage version is {storage}, not v1alpha1")
    for v in spec.get("versions", []):
        if "status" not in v.get("subresources", {}):
            problems.append(f"version {v['name']} has no status subresource")
    if problems:
        raise Failure(f"{CRD}: " + "; ".join(problems))
    return crd["metadata"]["name"]


def lint(values_files: list[str]) -> int:
    runs = [("default values", None)] + [(p, load_values_file(p)) for p in values_files]
    for label, values in runs:
        report = helm.lint(
            CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSIONS[0]}"
        )
        msgs = report.get("messages") or []
        bad = [m for m in msgs if m.get("severity", 0) >= 2]
        if bad or report.get("errors"):
            lines = [f"{m['path']}: {m['error'].strip()}" for m in bad]
            lines += [e.strip() for e in report.get("errors") or [] if e.strip() not in str(lines)]
            raise Failure(f"helm lint ({label}) failed:\n  " + "\n  ".join(lines))
    return len(runs)


def find(docs: list[tuple[str, dict]], kind: str) -> list[dict]:
    return [d for _, d in docs if d["kind"] == kind]


def one(docs: list[tuple[str, dict]], kind: str) -> dict:
    found = find(docs, kind)
    if len(found) != 1:
        raise Failure(f"expected one {kind}, rendered {len(found)}")
    return found[0]


def check_objects(docs: list[tuple[str, dict]], values: dict[str, Any], chart: helm.Chart) -> None:
    """The rendered objects say what the chart promises for these values."""
    merged = chart.merge_values(values)
    problems = []
    deploy = one(docs, "Deployment")
    spec = deploy["spec"]
    if spec.get("replicas") != 1:
        problems.append(f"Deployment replicas is {spec.get('replicas')}, not 1")
    if spec.get("strategy", {}).get("type") != "Recreate":
        problems.append("Deployment strategy is not Recreate")
    pod = spec["template"]["spec"]
    if len(pod["containers"]) != 1:
        raise Failure(f"expected one container, rendered {len(pod['containers'])}")
    container = pod["containers"][0]
    port = int(merged["metricsPort"])
    args = ["--metrics-address", f"0.0.0.0:{port}", "--log-format", merged["logFormat"]]
    for ns in merged["watchNamespaces"]:
        args += ["--namespace", ns]
    if merged["networkPolicy"]["enabled"]:
        operator_pods = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "streamjob-operator",
                    "app.kubernetes.io/instance": RELEASE,
                }
            },
        }
        clients = [operator_pods] + merged["networkPolicy"]["extraControlClients"]
        rendered = container.get("args", [])
        if "--control-clients" not in rendered:
            problems.append("networkPolicy.enabled but no --control-clients argument")
        else:
            at = rendered.index("--control-clients")
            if json.loads(rendered[at + 1]) != clients:
                problems.append(f"--control-clients is {rendered[at + 1]}, expected {clients}")
            args += ["--control-clients", rendered[at + 1]]
    if container.get("command") != ["streamjob-operator"]:
        problems.append(f"command is {container.get('command')}, not [streamjob-operator]")
    if container.get("args") != args:
        problems.append(f"args are {container.get('args')}, expected {args}")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    if env.get("STREAMJOB_LOG") != merged["logLevel"]:
        problems.append(f"STREAMJOB_LOG is {env.get('STREAMJOB_LOG')}, not {merged['logLevel']}")
    tag = merged["image"]["tag"] or chart.metadata["appVersion"]
    if container.get("image") != f"{merged['image']['repository']}:{tag}":
        problems.append(f"image is {container.get('image')}")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if ports.get("metrics") != port:
        problems.append(f"container port 'metrics' is {ports.get('metrics')}, not {port}")
    for probe in ("livenessProbe", "readinessProbe"):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != "/healthz" or get.get("port") not in ("metrics", port):
            problems.append(f"{probe} is not httpGet /healthz on the metrics port")
    sc = container.get("securityContext", {})
    if not (
        sc.get("readOnlyRootFilesystem")
        and sc.get("runAsNonRoot")
        and sc.get("allowPrivilegeEscalation") is False
        and "ALL" in sc.get("capabilities", {}).get("drop", [])
    ):
        problems.append("the container's securityContext is not locked down")

    svc = one(docs, "Service")
    if [(p.get("name"), p.get("port")) for p in svc["spec"]["ports"]] != [("metrics", port)]:
        problems.append("the Service does not expose exactly the port 'metrics'")

    sa_name = pod.get("serviceAccountName")
    sas = find(docs, "ServiceAccount")
    if merged["serviceAccount"]["create"]:
        if [s["metadata"]["name"] for s in sas] != [sa_name]:
            problems.append(f"the ServiceAccount does not match serviceAccountName {sa_name}")
    elif sas:
        problems.append("serviceAccount.create is false but a ServiceAccount was rendered")
    subject = [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}]
    watched = merged["watchNamespaces"]
    if not watched:
        # Every namespace: one ClusterRole, bound cluster-wide.
        binding = one(docs, "ClusterRoleBinding")
        role = one(docs, "ClusterRole")
        if binding["roleRef"]["name"] != role["metadata"]["name"] or binding["subjects"] != subject:
            problems.append("the ClusterRoleBinding does not bind the ClusterRole to the operator")
        roles = [("the ClusterRole", role)]
    else:
        # Only the watched namespaces: a Role and RoleBinding in each, nothing cluster-wide.
        if find(docs, "ClusterRole") or find(docs, "ClusterRoleBinding"):
            problems.append("watchNamespaces is set but cluster-wide RBAC was rendered")
        namespaces = lambda kind: sorted(d["metadata"]["namespace"] for d in find(docs, kind))
        if namespaces("Role") != sorted(watched) or namespaces("RoleBinding") != sorted(watched):
            problems.append(f"Roles and RoleBindings are not exactly one per watched namespace {watched}")
        role_names = {r["metadata"]["namespace"]: r["metadata"]["name"] for r in find(docs, "Role")}
        for binding in find(docs, "RoleBinding"):
            ns = binding["metadata"]["namespace"]
            if binding["roleRef"] != {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": role_names.get(ns),
            } or binding["subjects"] != subject:
                problems.append(f"the RoleBinding in {ns} does not bind the Role to the operator")
        roles = [(f"the Role in {r['metadata']['namespace']}", r) for r in find(docs, "Role")]

    for label, role in roles:
        granted: dict[tuple[str, str], set[str]] = {}
        for rule in role.get("rules", []):
            if rule.get("resourceNames") or rule.get("nonResourceURLs"):
                problems.append(f"unexpected rule {rule}")
            for g in rule.get("apiGroups", []):
                for r in rule.get("resources", []):
                    granted.setdefault((g, r), set()).update(rule.get("verbs", []))
        if granted != EXPECTED_RULES:
            extra = {k: sorted(v - EXPECTED_RULES.get(k, set())) for k, v in granted.items()}
            extra = {k: v for k, v in extra.items() if v}
            missing = {k: sorted(v - granted.get(k, set())) for k, v in EXPECTED_RULES.items()}
            missing = {k: v for k, v in missing.items() if v}
            problems.append(f"{label} is not least privilege: extra {extra}, missing {missing}")
    problems += check_monitoring(docs, merged, chart)
    if problems:
        raise Failure("rendered objects:\n  " + "\n  ".join(problems))


def check_monitoring(docs: list[tuple[str, dict]], merged: dict[str, Any], chart: helm.Chart) -> list[str]:
    """The Grafana dashboard's ConfigMap and the PodMonitor, when enabled."""
    problems = []
    dashboard = merged["grafana"]["dashboard"]
    maps = find(docs, "ConfigMap")
    if not dashboard["enabled"]:
        if maps:
            problems.append("grafana.dashboard.enabled is false but a ConfigMap was rendered")
    elif len(maps) != 1:
        problems.append(f"expected the dashboard's ConfigMap, rendered {len(maps)} ConfigMaps")
    else:
        cm = maps[0]
        labels = cm["metadata"].get("labels", {})
        if labels.get(dashboard["label"]) != dashboard["labelValue"]:
            problems.append(f"the dashboard's ConfigMap lacks the label {dashboard['label']}")
        namespace = dashboard.get("namespace") or NAMESPACE
        if cm["metadata"].get("namespace") != namespace:
            problems.append(f"the dashboard's ConfigMap is not in {namespace}")
        with open(DASHBOARD) as f:
            want = json.load(f)
        try:
            got = json.loads(cm.get("data", {}).get("streamjob.json", ""))
        except json.JSONDecodeError as e:
            got = f"not JSON: {e}"
        if got != want:
            problems.append(f"the dashboard's ConfigMap does not hold {DASHBOARD}")
    monitors = find(docs, "PodMonitor")
    monitor = merged["podMonitor"]
    if not monitor["enabled"]:
        if monitors:
            problems.append("podMonitor.enabled is false but a PodMonitor was rendered")
        return problems
    if len(monitors) != 1:
        return problems + [f"expected one PodMonitor, rendered {len(monitors)}"]
    pm = monitors[0]
    spec = pm["spec"]
    interval = monitor["interval"]
    endpoints = [(e.get("port"), e.get("path"), e.get("interval")) for e in spec.get("podMetricsEndpoints", [])]
    if endpoints != [("control", "/metrics", interval), ("metrics", "/metrics", interval)]:
        problems.append(f"the PodMonitor's endpoints are {endpoints}")
    if spec.get("podTargetLabels") != ["streamjob.io/job"]:
        problems.append("the PodMonitor does not label series with streamjob.io/job")
    names = [e for e in spec.get("selector", {}).get("matchExpressions", []) if e.get("key") == "app.kubernetes.io/name"]
    if [sorted(e.get("values", [])) for e in names] != [sorted(["streamjob", chart.metadata["name"]])]:
        problems.append(f"the PodMonitor does not select the jobs' and the operator's pods: {names}")
    watched = merged["watchNamespaces"]
    want_ns = {"matchNames": sorted(set(watched) | {NAMESPACE})} if watched else {"any": True}
    got_ns = spec.get("namespaceSelector", {})
    if "matchNames" in got_ns:
        got_ns = {"matchNames": sorted(got_ns["matchNames"])}
    if got_ns != want_ns:
        problems.append(f"the PodMonitor's namespaceSelector is {spec.get('namespaceSelector')}, expected {want_ns}")
    labels = pm["metadata"].get("labels", {})
    if any(labels.get(k) != v for k, v in (monitor.get("labels") or {}).items()):
        problems.append("the PodMonitor lacks podMonitor.labels")
    return problems


def render(chart: helm.Chart, label: str, values: dict[str, Any] | None, out: str) -> int:
    try:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.HelmError as e:
        raise Failure(f"render ({label}) failed: {e}") from e
    docs: list[tuple[str, dict]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        dest = os.path.join(out, path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w") as f:
            f.write(text)
        docs += parse_docs(dest, text)
    errors = validate_strict(docs)
    if errors:
        raise Failure(f"kubernetes-validate --strict ({label}):\n  " + "\n  ".join(errors))
    check_objects(docs, values or {}, chart)
    return len(docs)


def check_rejected(chart: helm.Chart) -> None:
    accepted = []
    for text, why in INVALID_VALUES:
        values = helm.values_from_yaml(text)
        try:
            chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        except helm.HelmValuesError:
            continue
        accepted.append(f"{text!r} ({why})")
    if accepted:
        raise Failure("values.schema.json accepted invalid values:\n  " + "\n  ".join(accepted))


def main() -> int:
    print(
        f"[chart] helm-python-sdk {helm.__version__} (Helm SDK {helm.helm_sdk_version()}), "
        f"kubernetes-validate {kubernetes_validate.__version__}, "
        f"Kubernetes {' and '.join(KUBE_VERSIONS)}",
        flush=True,
    )
    values_files = sorted(glob.glob(f"{CHART}/ci/*-values.yaml"))
    out = tempfile.mkdtemp(prefix="streamjob-chart.")
    chart: helm.Chart | None = None

    def crd() -> str:
        name = check_crd()
        crds = [c["filename"] for c in chart.crds]
        if crds != ["streamjob-operator/crds/streamjob.yaml"]:
            raise Failure(f"Helm sees these CRD files in the chart: {crds}")
        return f"{CHART_CRD} equals {CRD}; CustomResourceDefinition {name} validates --strict"

    def lint_all() -> str:
        n = lint(values_files)
        return (
            f"helm lint --strict passed with {n} values sets (defaults, {', '.join(values_files)})"
        )

    def render_all() -> str:
        variants: list[tuple[str, dict[str, Any] | None]] = [("default values", None)]
        variants += [(p, load_values_file(p)) for p in values_files]
        variants.append(
            (
                "serviceAccount.create=false, metricsPort 9090, image.tag dev",
                {
                    "serviceAccount": {"create": False, "name": "custom"},
                    "metricsPort": 9090,
                    "image": {"tag": "dev"},
                },
            )
        )
        counts = [
            f"{label}: {render(chart, label, v, os.path.join(out, str(i)))} objects"
            for i, (label, v) in enumerate(variants)
        ]
        return "rendered, validated --strict, checked (" + "; ".join(counts) + ")"

    def rejected() -> str:
        check_rejected(chart)
        return (
            f"values.schema.json rejects all {len(INVALID_VALUES)} invalid values sets "
            f"(e.g. {INVALID_VALUES[0][0]!r})"
        )

    steps: list[tuple[str, Callable[[], str]]] = [
        ("crds", crd),
        ("lint", lint_all),
        ("render", render_all),
        ("schema", rejected),
    ]
    try:
        try:
            chart = helm.Chart.load(CHART)
        except helm.HelmError as e:
            raise Failure(f"{CHART} does not load: {e}") from e
        for n, (name, fn) in enumerate(steps, 1):
            try:
                step(n, len(steps), f"{name}: {fn()}")
            except helm.HelmError as e:
                raise Failure(f"{name}: {type(e).__name__}: {e}") from e
    except Failure as e:
        print(f"[chart] FAILED: {e}", file=sys.stderr)
        if any(os.scandir(out)):
            print(f"[chart] rendered manifests are in {out}", file=sys.stderr)
        return 1
    finally:
        if chart is not None:
            chart.close()
    shutil.rmtree(out)
    print("[chart] OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
