"""Every YAML parses; ray_cluster.yaml passes Ray's cluster-config validation; the Kubernetes
manifests pass kubernetes-validate (Kubernetes' own OpenAPI schemas, bundled, offline) and the
KubeRay resources a schema of KubeRay v1's required fields."""

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


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml", "nightly-cronjob.yaml"])
def test_kubernetes_manifests_pass_schema_checks(name):
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    for doc in documents(ROOT / "deploy" / "kuberay" / name):
        if doc["kind"] in KUBERAY:
            jsonschema.validate(doc, KUBERAY[doc["kind"]])
            spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
            for template in pod_templates(spec):
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
