"""Every YAML parses; ray_cluster.yaml passes Ray's cluster-config validation; the Kubernetes
manifests pass kubernetes-validate (Kubernetes' own OpenAPI schemas, bundled, offline) and the
KubeRay resources a schema of KubeRay v1's required fields. Token authentication: every Ray
container and submitter takes the token from one Secret, which no file holds; ray_cluster.yaml
turns it on in every container and copies the token file to every node. The NetworkPolicy,
evaluated with Kubernetes' rules, admits to the heads only their own clusters' pods (every port)
and the submitters (the job API, 8265)."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
YAML_FILES = [ROOT / "ray_cluster.yaml", *sorted((ROOT / "deploy").rglob("*.yaml"))]

# Written from KubeRay's CRDs (ray.io/v1 RayCluster and RayJob): the fields they require, and the
# types of the ones these manifests use. Pod templates are checked with Kubernetes' schemas below.
TEMPLATE = {"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object", "required": ["containers"]}}}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
CLUSTER_SPEC = {
    "type": "object",
    "required": ["headGroupSpec"],
    "properties": {
        "rayVersion": {"type": "string"},
        "enableInTreeAutoscaling": {"type": "boolean"},
        "headGroupSpec": {
            "type": "object",
            "required": ["rayStartParams", "template"],
            "properties": {"rayStartParams": STRING_MAP, "template": TEMPLATE, "serviceType": {"type": "string"}},
        },
        "workerGroupSpecs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["groupName", "rayStartParams", "template"],
                "properties": {
                    "groupName": {"type": "string"},
                    "replicas": {"type": "integer", "minimum": 0},
                    "minReplicas": {"type": "integer", "minimum": 0},
                    "maxReplicas": {"type": "integer", "minimum": 0},
                    "rayStartParams": STRING_MAP,
                    "template": TEMPLATE,
                },
            },
        },
    },
}
CLUSTER_SPEC["properties"]["authOptions"] = {  # KubeRay v1.6.0 and later
    "type": "object",
    "additionalProperties": False,
    "properties": {"mode": {"enum": ["disabled", "token"]}, "secretName": {"type": "string"}, "enableK8sTokenAuth": {"type": "boolean"}},
}
KUBERAY = {
    "RayCluster": {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {"spec": CLUSTER_SPEC}},
    "RayJob": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["entrypoint"],
                "properties": {
                    "entrypoint": {"type": "string"},
                    "shutdownAfterJobFinishes": {"type": "boolean"},
                    "ttlSecondsAfterFinished": {"type": "integer"},
                    "runtimeEnvYAML": {"type": "string"},
                    "submitterPodTemplate": TEMPLATE,
                    "rayClusterSpec": CLUSTER_SPEC,
                },
            }
        },
    },
}


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path):
    assert documents(path)


def test_ray_cluster_yaml_passes_rays_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    validate_config(config)
    validate_config(prepare_config(copy.deepcopy(config)))
    assert config["available_node_types"]["gpu_worker"]["resources"]["GPU"] == 1
    assert config["available_node_types"]["head"]["resources"].get("GPU", 0) == 0
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu_worker"]["max_workers"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)


def pod_templates(spec):
    yield spec["headGroupSpec"]["template"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["template"]


KUBE_FILES = sorted(p.name for p in (ROOT / "deploy" / "kuberay").glob("*.yaml"))


def test_every_kubernetes_manifest_is_checked():
    assert KUBE_FILES == ["networkpolicy.yaml", "nightly-cronjob.yaml", "raycluster.yaml", "rayjob.yaml"]


@pytest.mark.parametrize("name", KUBE_FILES)
def test_kubernetes_manifests_pass_schema_checks(name):
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    for doc in documents(ROOT / "deploy" / "kuberay" / name):
        if doc["kind"] in KUBERAY:
            jsonschema.validate(doc, KUBERAY[doc["kind"]])
            spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
            templates = list(pod_templates(spec))
            if doc["kind"] == "RayJob" and "submitterPodTemplate" in doc["spec"]:
                templates.append(doc["spec"]["submitterPodTemplate"])
            for template in templates:
                pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
                kubernetes_validate.validate(pod_template, version, strict=True)
        else:
            kubernetes_validate.validate(doc, version, strict=True)


def test_schema_checks_can_fail():
    import kubernetes_validate

    cron = documents(ROOT / "deploy" / "kuberay" / "nightly-cronjob.yaml")[0]
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cron, kubernetes_validate.latest_version(), strict=True)
    job = documents(ROOT / "deploy" / "kuberay" / "rayjob.yaml")[0]
    del job["spec"]["entrypoint"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, KUBERAY["RayJob"])


# --- token authentication -------------------------------------------------------------------------

SECRET = {"name": "corpus-nlp-ray-token", "key": "auth_token"}  # the key KubeRay's authOptions.secretName reads


def kube(name):
    return documents(ROOT / "deploy" / "kuberay" / name)


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def walk(node):
    yield node
    for child in node.values() if isinstance(node, dict) else node if isinstance(node, list) else []:
        yield from walk(child)


def check_token_from_secret(cluster, rayjob, cron):
    """Each Ray container of the RayCluster and the RayJob (head and every worker group) and the
    CronJob's submitter run with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN from SECRET; KubeRay's
    authOptions name the same Secret; no manifest holds a Secret or a token value."""
    submitter = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    for spec in (cluster["spec"], rayjob["spec"]["rayClusterSpec"]):
        assert spec.get("authOptions") == {"mode": "token", "secretName": SECRET["name"]}
        assert len(list(pod_templates(spec))) == 1 + len(spec["workerGroupSpecs"]) >= 2
    containers = [t["spec"]["containers"][0] for spec in (cluster["spec"], rayjob["spec"]["rayClusterSpec"]) for t in pod_templates(spec)]
    for container in [*containers, submitter]:
        env = env_of(container)
        assert env.get("RAY_AUTH_MODE") == {"name": "RAY_AUTH_MODE", "value": "token"}, container["name"]
        assert env.get("RAY_AUTH_TOKEN") == {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": SECRET}}, container["name"]
    for doc in (cluster, rayjob, cron):
        assert not [n for n in walk(doc) if isinstance(n, dict) and n.get("kind") == "Secret"]
        assert not [n for n in walk(doc) if isinstance(n, dict) and n.get("name") == "RAY_AUTH_TOKEN" and "value" in n]


def test_kuberay_token_comes_from_the_secret():
    check_token_from_secret(kube("raycluster.yaml")[0], kube("rayjob.yaml")[0], kube("nightly-cronjob.yaml")[0])


def test_token_checks_can_fail():
    cluster, rayjob, cron = kube("raycluster.yaml")[0], kube("rayjob.yaml")[0], kube("nightly-cronjob.yaml")[0]

    def inline(docs):  # the token written into the worker's env
        env_of(docs[0]["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0])["RAY_AUTH_TOKEN"].update(value="t0ken")

    def drop_worker_env(docs):
        docs[1]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0].pop("env")

    def other_secret(docs):
        docs[2]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]["name"] = "x"

    def no_auth_options(docs):
        docs[0]["spec"].pop("authOptions")

    for breaks in (inline, drop_worker_env, other_secret, no_auth_options):
        docs = copy.deepcopy([cluster, rayjob, cron])
        breaks(docs)
        with pytest.raises(AssertionError):
            check_token_from_secret(*docs)


def test_ray_cluster_yaml_turns_token_auth_on_everywhere():
    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]  # every process of every node's container
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # the token made locally, on every node
    # `ray dashboard` forwards to the head's localhost: the job API must listen there
    (start,) = [c for c in config["head_start_ray_commands"] if c.startswith("ray start")]
    assert "--dashboard-host=127.0.0.1" in start.split()


# --- NetworkPolicy --------------------------------------------------------------------------------

NS = "corpus"  # where the manifests are applied
OPERATOR_NS = "default"


def kuberay_pod_labels(cluster, node_type, group, template):
    """The labels KubeRay gives a Ray pod: the template's, then its own (ray.io/cluster, node-type
    and group cannot be overridden)."""
    return {**template.get("metadata", {}).get("labels", {}), "ray.io/is-ray-node": "yes", "ray.io/cluster": cluster,
            "ray.io/node-type": node_type, "ray.io/group": group, "ray.io/identifier": f"{cluster}-{node_type}",
            "app.kubernetes.io/name": "kuberay", "app.kubernetes.io/created-by": "kuberay-operator"}


def selects(selector, labels):
    assert set(selector) <= {"matchLabels"}, "the evaluator models matchLabels only"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peer_matches(peer, policy_ns, pod):
    assert set(peer) <= {"podSelector", "namespaceSelector"}, "the evaluator models pod and namespace selectors only"
    ns, labels = pod
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": ns})
    else:
        in_namespace = ns == policy_ns  # a podSelector alone means the policy's own namespace
    return in_namespace and selects(peer.get("podSelector", {}), labels)


def port_matches(entry, port):
    assert isinstance(entry["port"], int), "named ports are not modelled"
    return entry.get("protocol", "TCP") == "TCP" and entry["port"] <= port <= entry.get("endPort", entry["port"])


def admitted(policies, source, target, port):
    """Whether TCP traffic from pod `source` to pod `target` (namespace, labels) on `port` is admitted,
    by Kubernetes' rules: a pod no Ingress policy selects admits everything; one that some select
    admits what any of their rules admits (a rule without `from` or `ports` admits every source or port)."""
    ns, labels = target
    applying = [p for p in policies if ns == NS and "Ingress" in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels)]
    if not applying:
        return True
    return any(
        (not rule.get("from") or any(peer_matches(peer, NS, source) for peer in rule["from"]))
        and (not rule.get("ports") or any(port_matches(entry, port) for entry in rule["ports"]))
        for policy in applying for rule in policy["spec"].get("ingress", [])
    )


def pods(cluster, rayjob, cron):
    """The pods the manifests make, as (namespace, labels); the RayJob's cluster name is generated."""
    out = {}
    for name, spec in (("corpus-nlp", cluster["spec"]), ("corpus-nlp-annotate-x7k2p", rayjob["spec"]["rayClusterSpec"])):
        key = "cluster" if name == "corpus-nlp" else "job"
        out[f"{key} head"] = (NS, kuberay_pod_labels(name, "head", "headgroup", spec["headGroupSpec"]["template"]))
        for group in spec["workerGroupSpecs"]:
            out[f"{key} worker"] = (NS, kuberay_pod_labels(name, "worker", group["groupName"], group["template"]))
    out["nightly submitter"] = (NS, {**cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
                                     "batch.kubernetes.io/job-name": "corpus-nlp-nightly-29000000"})
    out["job submitter"] = (NS, {**rayjob["spec"]["submitterPodTemplate"]["metadata"]["labels"],
                                 "batch.kubernetes.io/job-name": "corpus-nlp-annotate"})
    out["operator"] = (OPERATOR_NS, {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/instance": "kuberay-operator"})
    out["other pod"] = (NS, {"app": "something-else"})
    out["operator lookalike elsewhere"] = (NS, {"app.kubernetes.io/name": "kuberay-operator"})
    out["cluster worker elsewhere"] = ("other", out["cluster worker"][1])
    return out


HEAD_PORTS = {"GCS": 6379, "job API": 8265, "Ray Client": 10001, "a worker port": 12345}


def check_network_policy(policies, cluster, rayjob, cron):
    pod = pods(cluster, rayjob, cron)
    for p in policies:
        assert p["kind"] == "NetworkPolicy" and p["spec"]["policyTypes"] == ["Ingress"]
    for key in ("cluster", "job"):
        head, worker = pod[f"{key} head"], pod[f"{key} worker"]
        for target in (head, worker):  # each pod of the cluster is selected: the other pods are refused
            assert not admitted(policies, pod["other pod"], target, 6379)
        for port in HEAD_PORTS.values():  # the cluster's own pods reach every port of the head
            assert admitted(policies, worker, head, port) and admitted(policies, head, head, port)
        submitter = pod["nightly submitter"] if key == "cluster" else pod["job submitter"]
        assert admitted(policies, submitter, head, 8265)
        strangers = [pod["other pod"], pod["cluster worker elsewhere"], pod["operator lookalike elsewhere"],
                     pod["job worker" if key == "cluster" else "cluster worker"]]  # the other Ray cluster too
        for name, port in HEAD_PORTS.items():
            for stranger in strangers:
                assert not admitted(policies, stranger, head, port), name
            if port != 8265:
                assert not admitted(policies, submitter, head, port), name
                assert not admitted(policies, pod["operator"], head, port), name
    # the KubeRay operator follows the RayJob's job through the job API; the RayCluster needs no operator access
    assert admitted(policies, pod["operator"], pod["job head"], 8265)
    assert not admitted(policies, pod["operator"], pod["cluster head"], 8265)


def test_network_policy_limits_the_heads_to_their_clusters_and_submitters():
    policies = kube("networkpolicy.yaml")
    assert [p["metadata"]["name"] for p in policies] == ["corpus-nlp-ray", "corpus-nlp-annotate-ray"]
    # the ports listed: the submitters get the job API and only it
    for p in policies:
        assert p["spec"]["ingress"][1]["ports"] == [{"protocol": "TCP", "port": 8265}]
    check_network_policy(policies, kube("raycluster.yaml")[0], kube("rayjob.yaml")[0], kube("nightly-cronjob.yaml")[0])


def test_network_policy_checks_can_fail():
    policies, cluster, rayjob, cron = kube("networkpolicy.yaml"), kube("raycluster.yaml")[0], kube("rayjob.yaml")[0], kube("nightly-cronjob.yaml")[0]

    def open_ports(ps, *_):  # the submitters' rule without its ports: GCS and Ray Client open to them
        ps[0]["spec"]["ingress"][1].pop("ports")

    def open_sources(ps, *_):  # a rule without `from`: every pod of the Kubernetes cluster
        ps[1]["spec"]["ingress"][0].pop("from")

    def misses_head(ps, *_):  # the selector misses the pods KubeRay makes
        ps[0]["spec"]["podSelector"]["matchLabels"] = {"ray.io/cluster": "corpus"}

    def unlabelled_job_pods(_, cluster, rayjob, cron):  # the RayJob's templates lose the label the policy selects
        rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["labels"] = {}

    def unlabelled_submitter(_, cluster, rayjob, cron):
        cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"] = {}

    def any_namespace(ps, *_):  # operator pods of any namespace
        ps[1]["spec"]["ingress"][1]["from"][1]["namespaceSelector"] = {}

    for breaks in (open_ports, open_sources, misses_head, unlabelled_job_pods, unlabelled_submitter, any_namespace):
        docs = copy.deepcopy([policies, cluster, rayjob, cron])
        breaks(*docs)
        with pytest.raises(AssertionError):
            check_network_policy(*docs)
