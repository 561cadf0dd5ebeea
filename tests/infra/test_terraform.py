"""terraform/: module structure, the GPU scheduling contract with the chart, docs and static scans.

Providers cannot be downloaded here, so `init`/`validate`/`tflint` run in the hosted workflow
(.github/workflows/terraform.yml). Locally we parse every file with python-hcl2, run
`terraform fmt`, evaluate the modules' provider-free locals and variable validations with the
real `terraform` binary, and scan with checkov.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from tests.contracts import PLATFORM_CHART_VALUES

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
MODULES = sorted(p for p in (TERRAFORM / "modules").iterdir() if p.is_dir())
EXAMPLES = sorted(p for p in (TERRAFORM / "examples").iterdir() if p.is_dir())
ROOTS = MODULES + EXAMPLES
ROOT_IDS = [str(p.relative_to(TERRAFORM)) for p in ROOTS]
TF_FILES = sorted(p for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts)
CHART_VALUES = REPO / "charts" / "voicebot" / "values.yaml"
CHECKOV = REPO / ".tools" / "venv" / "bin" / "checkov"
TERRAFORM_BIN = shutil.which("terraform")
AMTOOL = shutil.which("amtool")

GPU_CLUSTER = TERRAFORM / "modules" / "gpu-cluster"
PLATFORM = TERRAFORM / "modules" / "platform"

EKS_TAINT_EFFECTS = {
    "NO_SCHEDULE": "NoSchedule",
    "NO_EXECUTE": "NoExecute",
    "PREFER_NO_SCHEDULE": "PreferNoSchedule",
}


# ---- HCL helpers ------------------------------------------------------------------------------


def unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted ('"gpu"'); return the plain string."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value[1:-1]
    return value


def deep_unquote(value: Any) -> Any:
    if isinstance(value, dict):
        return {unquote(k): deep_unquote(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [deep_unquote(v) for v in value]
    return unquote(value)


def expression(value: str) -> str:
    """'${local.x}' -> 'local.x'."""
    return value[2:-1] if value.startswith("${") and value.endswith("}") else value


def load(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return hcl2.load(f)


def named_blocks(doc: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for item in doc.get(kind, []):
        for name, body in item.items():
            if not name.startswith("__"):
                yield unquote(name), body


def root_blocks(root: Path, kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for tf in sorted(root.glob("*.tf")):
        found.update(named_blocks(load(tf), kind))
    return found


def root_locals(root: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for tf in sorted(root.glob("*.tf")):
        for block in load(tf).get("locals", []):
            merged.update({k: v for k, v in block.items() if not k.startswith("__")})
    return merged


def type_head(type_expr: str) -> str:
    return re.split(r"[(\s]", expression(type_expr), maxsplit=1)[0]


# ---- chart contract ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton_scheduling() -> dict[str, Any]:
    """The chart's default Triton nodeSelector and tolerations, as values.yaml states them."""
    values = yaml.safe_load(CHART_VALUES.read_text()) or {}
    triton = values.get("triton")
    assert isinstance(triton, dict), f"{CHART_VALUES} has no triton: section"
    for key in ("nodeSelector", "tolerations"):
        assert triton.get(key), f"{CHART_VALUES} lacks triton.{key} (the GPU scheduling contract)"
    return {"nodeSelector": triton["nodeSelector"], "tolerations": triton["tolerations"]}


def assert_schedulable(
    node_selector: dict[str, str],
    tolerations: list[dict[str, Any]],
    labels: dict[str, str],
    taints: list[dict[str, str]],
) -> None:
    """A pod with node_selector and tolerations lands on nodes with labels and taints (k8s effects)."""
    for key, value in node_selector.items():
        assert labels.get(key) == value, f"GPU nodes lack label {key}={value} (they have {labels})"

    def tolerates(tol: dict[str, Any], taint: dict[str, str]) -> bool:
        if tol.get("effect") and tol["effect"] != taint["effect"]:
            return False
        if tol.get("operator", "Equal") == "Exists":
            return tol.get("key") in (None, "", taint["key"])
        return tol.get("key") == taint["key"] and str(tol.get("value", "")) == taint["value"]

    for taint in taints:
        assert any(tolerates(t, taint) for t in tolerations), f"no chart toleration for GPU taint {taint}"
    for tol in tolerations:
        assert any(tolerates(tol, t) for t in taints), f"chart toleration {tol} matches no GPU taint {taints}"


# ---- structure --------------------------------------------------------------------------------


def test_modules_and_examples_present() -> None:
    assert {p.name for p in MODULES} >= {"gpu-cluster", "platform"}
    assert {p.name for p in EXAMPLES} >= {"aws-eks"}


@pytest.mark.parametrize("tf", TF_FILES, ids=[str(p.relative_to(TERRAFORM)) for p in TF_FILES])
def test_every_tf_file_parses(tf: Path) -> None:
    assert isinstance(load(tf), dict)


@pytest.mark.parametrize("root", ROOTS, ids=ROOT_IDS)
def test_four_file_layout(root: Path) -> None:
    missing = [
        f for f in ("main.tf", "variables.tf", "outputs.tf", "versions.tf") if not (root / f).is_file()
    ]
    assert not missing, f"{root.relative_to(REPO)} lacks {missing}"
    # Variables and outputs live in their own files, nowhere else.
    for tf in root.glob("*.tf"):
        doc = load(tf)
        if tf.name != "variables.tf":
            assert "variable" not in doc, f"variable declared in {tf.name}"
        if tf.name != "outputs.tf":
            assert "output" not in doc, f"output declared in {tf.name}"


@pytest.mark.parametrize("root", ROOTS, ids=ROOT_IDS)
def test_variables_have_description_and_type(root: Path) -> None:
    variables = root_blocks(root, "variable")
    assert variables, f"{root.name} declares no variables"
    for name, body in variables.items():
        assert unquote(body.get("description", "")).strip(), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"
        for rule in body.get("validation", []):
            assert rule.get("condition"), f"variable {name}: validation without condition"
            assert len(unquote(rule.get("error_message", ""))) > 10, f"variable {name}: unclear error_message"


@pytest.mark.parametrize("root", ROOTS, ids=ROOT_IDS)
def test_outputs_have_description(root: Path) -> None:
    outputs = root_blocks(root, "output")
    assert outputs, f"{root.name} declares no outputs"
    for name, body in outputs.items():
        assert unquote(body.get("description", "")).strip(), f"output {name} has no description"
        assert "value" in body, f"output {name} has no value"


# Variables whose values are constrained must say so in a validation block.
VALIDATED = {
    "gpu-cluster": {
        "name",
        "kubernetes_version",
        "endpoint_public_access_cidrs",
        "cluster_admin_arns",
        "cluster_enabled_log_types",
        "cloudwatch_log_retention_days",
        "kms_key_deletion_window_in_days",
        "vpc_cidr",
        "availability_zone_count",
        "system_node_group",
        "gpu_node_group",
    },
    "platform": {
        "chart_versions",
        "host",
        "ingress_class_name",
        "cluster_issuer",
        "alertmanager_receiver",
        "grafana_host",
        "prometheus",
        "gpu_stack",
        "gpu_tolerations",
        "cluster_autoscaler",
        "release_name",
        "namespace",
        "gateway_replicas",
        "triton_autoscaling_enabled",
        "models_profile",
        "postgres",
        "voicebot_timeout_seconds",
    },
    "aws-eks": {"region", "name", "host", "acme_email"},
}


@pytest.mark.parametrize("root", ROOTS, ids=ROOT_IDS)
def test_constrained_variables_are_validated(root: Path) -> None:
    variables = root_blocks(root, "variable")
    expected = VALIDATED.get(root.name, set())
    assert expected <= variables.keys(), f"unknown names in VALIDATED: {expected - variables.keys()}"
    unvalidated = sorted(v for v in expected if not variables[v].get("validation"))
    assert not unvalidated, f"{root.name}: no validation block on {unvalidated}"


PINNED = re.compile(r"^(~>\s*\d+\.\d+(\.\d+)?|=?\s*\d+\.\d+\.\d+)$")


@pytest.mark.parametrize("root", ROOTS, ids=ROOT_IDS)
def test_versions_pin_terraform_and_providers(root: Path) -> None:
    terraform_blocks = load(root / "versions.tf").get("terraform", [])
    assert len(terraform_blocks) == 1
    settings = terraform_blocks[0]
    required_version = unquote(settings.get("required_version", ""))
    assert re.search(r">=\s*1\.\d+", required_version), f"required_version {required_version!r} has no floor"
    assert "<" in required_version, f"required_version {required_version!r} has no ceiling"

    declared: dict[str, dict[str, Any]] = {}
    for block in settings.get("required_providers", []):
        declared.update({k: v for k, v in block.items() if not k.startswith("__")})
    assert declared, "no required_providers"
    for name, spec in declared.items():
        assert unquote(spec.get("source", "")).startswith("hashicorp/"), f"{name}: source not pinned"
        version = unquote(spec.get("version", ""))
        assert PINNED.match(version), f"{name}: version {version!r} is not pinned (use ~> X.Y or X.Y.Z)"

    # Every provider a resource or data source uses is declared.
    used = set()
    for kind in ("resource", "data"):
        for tf in root.glob("*.tf"):
            for item in load(tf).get(kind, []):
                used.update(unquote(t).split("_", 1)[0] for t in item if not t.startswith("__"))
    assert used <= declared.keys(), f"providers used but not declared: {used - declared.keys()}"


@pytest.mark.parametrize("root", MODULES, ids=[p.name for p in MODULES])
def test_modules_declare_no_provider_blocks(root: Path) -> None:
    assert not root_blocks(root, "provider"), f"{root.name}: provider blocks belong in examples"


@pytest.mark.parametrize("root", ROOTS, ids=ROOT_IDS)
def test_module_calls_are_pinned(root: Path) -> None:
    for name, body in root_blocks(root, "module").items():
        source = unquote(body["source"])
        if source.startswith(("./", "../")):
            assert (root / source / "main.tf").is_file(), f"module {name}: {source} is not a module"
        else:
            assert PINNED.match(unquote(body.get("version", ""))), (
                f"module {name}: {source} has no pinned version"
            )


def test_examples_wire_every_required_module_input() -> None:
    for example in EXAMPLES:
        for name, body in root_blocks(example, "module").items():
            source = unquote(body["source"])
            if not source.startswith("../"):
                continue
            variables = root_blocks((example / source).resolve(), "variable")
            required = {v for v, b in variables.items() if "default" not in b}
            missing = required - body.keys()
            assert not missing, f"{example.name}: module {name} misses required inputs {missing}"
            meta = {"source", "version", "providers", "depends_on", "count", "for_each"}
            unknown = {k for k in body if not k.startswith("__")} - variables.keys() - meta
            assert not unknown, f"{example.name}: module {name} gets unknown inputs {unknown}"


@pytest.mark.parametrize("root", ROOTS, ids=ROOT_IDS)
def test_no_unused_variables_or_locals(root: Path) -> None:
    """What tflint's terraform_unused_declarations reports in CI, checked here too."""
    text = "\n".join(tf.read_text() for tf in root.glob("*.tf"))
    unused = [f"var.{v}" for v in root_blocks(root, "variable") if not re.search(rf"\bvar\.{v}\b", text)]
    unused += [f"local.{v}" for v in root_locals(root) if not re.search(rf"\blocal\.{v}\b", text)]
    assert not unused, f"{root.name}: declared but never used: {unused}"


# ---- the GPU scheduling contract (static) --------------------------------------------------------


def literal_pairs(expr: str) -> dict[str, str]:
    return dict(re.findall(r'"([^"]+)"\s*=\s*"([^"]*)"', expr))


def test_gpu_node_group_matches_chart_triton_scheduling(triton_scheduling: dict[str, Any]) -> None:
    locals_ = root_locals(GPU_CLUSTER)
    labels = literal_pairs(locals_["gpu_node_labels"])
    taints = [
        {
            "key": unquote(t["key"]),
            "value": unquote(t["value"]),
            "effect": EKS_TAINT_EFFECTS[unquote(t["effect"])],
        }
        for t in locals_["gpu_node_taints"].values()
    ]
    assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in taints
    assert_schedulable(triton_scheduling["nodeSelector"], triton_scheduling["tolerations"], labels, taints)

    # ... and the EKS GPU node group is the one that carries them, on an NVIDIA AMI.
    eks = root_blocks(GPU_CLUSTER, "module")["eks"]
    gpu = eks["eks_managed_node_groups"]["gpu"]
    assert expression(gpu["labels"]) == "local.gpu_node_labels"
    assert expression(gpu["taints"]) == "local.gpu_node_taints"
    assert expression(gpu["ami_type"]) == "var.gpu_node_group.ami_type"
    ami_default = expression(root_blocks(GPU_CLUSTER, "variable")["gpu_node_group"]["type"])
    assert 'ami_type = optional(string, "AL2023_x86_64_NVIDIA")' in ami_default
    for bound in ("min_size", "max_size", "desired_size"):
        assert expression(gpu[bound]) == f"var.gpu_node_group.{bound}"
    # The system node group must stay untainted and off the GPU label.
    system = eks["eks_managed_node_groups"]["system"]
    assert "taints" not in system
    assert literal_pairs(locals_["system_node_labels"]).get("voicebot.dev/node-pool") != "gpu"


def test_platform_defaults_match_chart_triton_scheduling(triton_scheduling: dict[str, Any]) -> None:
    """The GPU add-on's default scheduling (device plugin) targets the same nodes as Triton."""
    variables = root_blocks(PLATFORM, "variable")
    assert deep_unquote(variables["gpu_node_selector"]["default"]) == triton_scheduling["nodeSelector"]
    assert deep_unquote(variables["gpu_tolerations"]["default"]) == triton_scheduling["tolerations"]


# ---- evaluated with the terraform binary (no providers needed) ----------------------------------


needs_terraform = pytest.mark.skipif(
    TERRAFORM_BIN is None, reason="no terraform binary on PATH: terraform evaluation checks skipped"
)


def terraform(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM_BIN
    env = {
        **os.environ,
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "TF_CLI_CONFIG_FILE": os.devnull,
        "TF_INPUT": "0",
    }
    return subprocess.run(
        [TERRAFORM_BIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


class Evaluator:
    """Copies a module's variables.tf and its provider-free locals file into a scratch root,
    adds outputs for the expressions asked for, and applies it (there are no resources)."""

    def __init__(self, module: Path, locals_file: str, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        for name in ("variables.tf", locals_file):
            shutil.copy(module / name, workdir / name)
        self.initialised = False

    def apply(self, tfvars: dict[str, Any], outputs: dict[str, str]) -> subprocess.CompletedProcess[str]:
        body = "".join(
            f'output "{name}" {{\n  value     = {expr}\n  sensitive = true\n}}\n'
            for name, expr in outputs.items()
        )
        (self.workdir / "eval_outputs.tf").write_text(body)
        (self.workdir / "terraform.tfvars.json").write_text(json.dumps(tfvars))
        if not self.initialised:
            init = terraform(["init", "-backend=false", "-no-color"], self.workdir)
            assert init.returncode == 0, init.stderr
            self.initialised = True
        (self.workdir / "terraform.tfstate").unlink(missing_ok=True)
        return terraform(["apply", "-auto-approve", "-no-color"], self.workdir)

    def evaluate(self, tfvars: dict[str, Any], outputs: dict[str, str]) -> dict[str, Any]:
        applied = self.apply(tfvars, outputs)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        shown = terraform(["output", "-json"], self.workdir)
        assert shown.returncode == 0, shown.stderr
        return {k: v["value"] for k, v in json.loads(shown.stdout).items()}


@pytest.fixture
def cluster_eval(tmp_path: Path) -> Evaluator:
    return Evaluator(GPU_CLUSTER, "scheduling.tf", tmp_path / "gpu-cluster")


@pytest.fixture
def platform_eval(tmp_path: Path) -> Evaluator:
    return Evaluator(PLATFORM, "values.tf", tmp_path / "platform")


CLUSTER_VARS: dict[str, Any] = {"name": "voicebot", "endpoint_public_access_cidrs": ["203.0.113.0/24"]}
PLATFORM_VARS: dict[str, Any] = {
    "host": "voicebot.example.com",
    "cluster_issuer": {"acme_email": "ops@example.com"},
    "cluster_autoscaler": {"cluster_name": "voicebot", "aws_region": "us-east-1"},
    "weights_storage_class_name": "efs",  # Triton autoscales by default: replicas share the weights
}


@needs_terraform
def test_gpu_labels_and_taints_evaluated_match_chart(
    cluster_eval: Evaluator, triton_scheduling: dict[str, Any]
) -> None:
    # Extra user labels must not displace the pool label.
    tfvars = {**CLUSTER_VARS, "gpu_node_group": {"labels": {"team": "ml"}}}
    got = cluster_eval.evaluate(
        tfvars,
        {
            "labels": "local.gpu_node_labels",
            "taints": "[for t in values(local.gpu_node_taints) : "
            "merge(t, { effect = local.kubernetes_taint_effect[t.effect] })]",
            "autoscaler_tags": "local.gpu_autoscaler_tags",
        },
    )
    assert got["labels"]["team"] == "ml"
    assert_schedulable(
        triton_scheduling["nodeSelector"], triton_scheduling["tolerations"], got["labels"], got["taints"]
    )
    prefix = "k8s.io/cluster-autoscaler/node-template/"
    for key, value in triton_scheduling["nodeSelector"].items():
        assert got["autoscaler_tags"][f"{prefix}label/{key}"] == value
    for taint in got["taints"]:
        assert (
            got["autoscaler_tags"][f"{prefix}taint/{taint['key']}"] == f"{taint['value']}:{taint['effect']}"
        )


CLUSTER_REJECTS = [
    ({"name": "Voicebot"}, "name must be 3-24 characters"),
    ({"endpoint_public_access_cidrs": []}, "list the CIDR blocks"),
    ({"endpoint_public_access_cidrs": ["0.0.0.0/0"]}, "not 0.0.0.0/0"),
    ({"kubernetes_version": "1.9"}, "kubernetes_version must be"),
    ({"vpc_cidr": "10.0.0.0/24"}, "/20 or larger"),
    ({"gpu_node_group": {"instance_types": ["m6i.large"]}}, "NVIDIA GPU instance types"),
    ({"gpu_node_group": {"min_size": 3, "max_size": 2}}, "min_size <= desired_size <= max_size"),
    ({"gpu_node_group": {"ami_type": "AL2023_x86_64_STANDARD"}}, "EKS NVIDIA AMI"),
    (
        {"gpu_node_group": {"labels": {"voicebot.dev/node-pool": "cpu"}}},
        "must not set voicebot.dev/node-pool",
    ),
    ({"system_node_group": {"min_size": 0}}, "1 <= min_size"),
    ({"cluster_admin_arns": ["admin"]}, "IAM role or user ARNs"),
]


@needs_terraform
@pytest.mark.parametrize(("overrides", "message"), CLUSTER_REJECTS, ids=[m for _, m in CLUSTER_REJECTS])
def test_gpu_cluster_rejects_bad_inputs(
    cluster_eval: Evaluator, overrides: dict[str, Any], message: str
) -> None:
    applied = cluster_eval.apply({**CLUSTER_VARS, **overrides}, {"labels": "local.gpu_node_labels"})
    assert applied.returncode != 0
    assert message in " ".join((applied.stdout + applied.stderr).split())


def leaf_paths(tree: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        paths |= leaf_paths(value, f"{path}.") if isinstance(value, dict) and value else {path}
    return paths


@needs_terraform
def test_platform_composes_chart_values_from_the_contract(platform_eval: Evaluator) -> None:
    everything = {
        **PLATFORM_VARS,
        "postgres": {"enabled": False, "external_existing_secret": "voicebot-db"},
        "secrets_existing_secret": "voicebot-secrets",
        "models_profile": "gpu",
        "hub_token_secret": "voicebot-hub-token",
        "gateway_replicas": 3,
    }
    values = platform_eval.evaluate(everything, {"v": "local.voicebot_values"})["v"]
    assert leaf_paths(values) == PLATFORM_CHART_VALUES
    assert values["gateway"]["ingress"] == {
        "enabled": True,
        "host": "voicebot.example.com",
        "className": "nginx",
        "tls": {"clusterIssuer": "letsencrypt"},
    }
    assert values["gateway"]["replicas"] == 3
    assert values["triton"]["autoscaling"] == {"enabled": True, "mode": "keda"}
    assert values["postgres"] == {"enabled": False, "external": {"existingSecret": "voicebot-db"}}
    assert values["secrets"] == {"existingSecret": "voicebot-secrets"}
    assert values["models"] == {
        "profile": "gpu",
        "fetch": {"hubTokenSecret": "voicebot-hub-token"},
        "weights": {"storageClassName": "efs", "accessModes": ["ReadWriteMany"]},
    }

    # Defaults leave the chart's own defaults alone (no nulls that would erase them), and
    # without kube-prometheus-stack the chart's monitoring objects are off.
    minimal = {
        **PLATFORM_VARS,
        "addons": {"kube_prometheus_stack": False, "cert_manager": False},
        "triton_autoscaling_enabled": False,
        "weights_storage_class_name": None,
    }
    values = platform_eval.evaluate(minimal, {"v": "local.voicebot_values"})["v"]
    assert leaf_paths(values) <= PLATFORM_CHART_VALUES
    assert {"secrets", "models"}.isdisjoint(values)
    assert "tls" not in values["gateway"]["ingress"]
    assert values["postgres"] == {"enabled": True}
    assert {m["enabled"] for m in values["metrics"].values()} == {False}


def test_chart_declares_every_value_the_platform_sets() -> None:
    if not CHART_VALUES.exists():
        pytest.skip(f"{CHART_VALUES.relative_to(REPO)} not there yet: the contract's names are checked above")
    values = yaml.safe_load(CHART_VALUES.read_text()) or {}
    missing = []
    for path in sorted(PLATFORM_CHART_VALUES):
        node: Any = values
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                missing.append(path)
                break
            node = node[key]
    assert not missing, f"charts/voicebot/values.yaml does not declare {missing}"


PLATFORM_REJECTS = [
    ({"host": "https://voicebot.example.com"}, "host must be a fully qualified"),
    ({"cluster_issuer": {"type": "acme"}}, "acme_email must be a valid e-mail"),
    ({"cluster_issuer": {"type": "vault", "acme_email": "a@b.co"}}, "type must be acme or selfsigned"),
    ({"alertmanager_receiver": {"type": "slack"}}, "slack_webhook_url must be an https://"),
    ({"alertmanager_receiver": {"type": "pagerduty", "pagerduty_routing_key": "x"}}, "32-character"),
    ({"alertmanager_receiver": {"type": "email"}}, "none, slack, pagerduty or webhook"),
    ({"addons": {"keda": False}}, "triton_autoscaling_enabled needs addons.keda"),
    ({"postgres": {"enabled": False}}, "external_existing_secret is required"),
    ({"cluster_autoscaler": {}}, "cluster_autoscaler.cluster_name and cluster_autoscaler.aws_region"),
    ({"chart_versions": {"keda": "~> 2.16"}}, "exact versions"),
    ({"gpu_stack": "rocm"}, "device-plugin, gpu-operator or none"),
    ({"release_name": "Voicebot"}, "release_name must be a DNS label"),
    ({"weights_storage_class_name": None}, "triton_autoscaling_enabled needs weights_storage_class_name"),
]


@needs_terraform
@pytest.mark.parametrize(("overrides", "message"), PLATFORM_REJECTS, ids=[m for _, m in PLATFORM_REJECTS])
def test_platform_rejects_bad_inputs(
    platform_eval: Evaluator, overrides: dict[str, Any], message: str
) -> None:
    applied = platform_eval.apply({**PLATFORM_VARS, **overrides}, {"v": "local.voicebot_values"})
    assert applied.returncode != 0
    assert message in " ".join((applied.stdout + applied.stderr).split())


RECEIVERS = {
    "none": {"type": "none"},
    "slack": {
        "type": "slack",
        "slack_webhook_url": "https://hooks.slack.com/services/T/B/X",
        "slack_channel": "#oncall",
    },
    "pagerduty": {"type": "pagerduty", "pagerduty_routing_key": "0123456789abcdef0123456789abcdef"},
    "webhook": {"type": "webhook", "webhook_url": "https://alerts.example.com/hook"},
}


@needs_terraform
@pytest.mark.parametrize("kind", sorted(RECEIVERS))
def test_alertmanager_config_from_variables(platform_eval: Evaluator, tmp_path: Path, kind: str) -> None:
    config = platform_eval.evaluate(
        {**PLATFORM_VARS, "alertmanager_receiver": RECEIVERS[kind]}, {"c": "local.alertmanager_config"}
    )["c"]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert config["route"]["receiver"] == "voicebot"
    assert set(receivers) == {"null", "voicebot"}
    configs = {k for k in receivers["voicebot"] if k.endswith("_configs")}
    assert configs == (set() if kind == "none" else {f"{kind}_configs"})
    if kind == "slack":
        assert receivers["voicebot"]["slack_configs"][0]["channel"] == "#oncall"
    if AMTOOL is None:
        pytest.skip(
            "amtool (Debian prometheus-alertmanager) not installed: config not checked by Alertmanager"
        )
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(config))
    checked = subprocess.run([AMTOOL, "check-config", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# ---- formatting and static scans -----------------------------------------------------------------


def test_terraform_fmt() -> None:
    if TERRAFORM_BIN is None:
        pytest.skip("no terraform binary on PATH: `terraform fmt -check -recursive` skipped")
    checked = terraform(["fmt", "-check", "-recursive", "-diff", "-no-color", str(TERRAFORM)], REPO)
    assert checked.returncode == 0, (
        f"run `terraform fmt -recursive terraform`:\n{checked.stdout}{checked.stderr}"
    )


SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(.*)")


def test_checkov_skips_are_justified() -> None:
    skips = []
    for tf in TF_FILES:
        for line in tf.read_text().splitlines():
            if match := SKIP_COMMENT.search(line):
                reason = match.group(2).lstrip(":").strip()
                assert len(reason) >= 30, f"{tf.relative_to(REPO)}: {match.group(1)} skipped without a reason"
                skips.append(match.group(1))
    assert skips, "expected the justified skips (registry module pinning) to be found"


def test_checkov_passes() -> None:
    assert CHECKOV.exists(), f"{CHECKOV.relative_to(REPO)} missing: run scripts/install-infra-tools.sh"
    scanned = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(TERRAFORM),
            "--framework",
            "terraform",
            "--skip-download",
            "--quiet",
            "--compact",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = scanned.stdout
    assert scanned.returncode == 0, report + scanned.stderr[-4000:]
    passed = re.search(r"Passed checks: (\d+), Failed checks: (\d+)", report)
    assert passed, f"no checkov summary in:\n{report}\n{scanned.stderr[-4000:]}"
    assert int(passed.group(2)) == 0, report
    assert int(passed.group(1)) > 20, f"checkov ran too few checks to mean anything:\n{report}"


# ---- READMEs -------------------------------------------------------------------------------------


def markdown_table(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    want = [c.strip() for c in header.strip("|").split("|")]
    for i, line in enumerate(lines):
        if [c.strip() for c in line.strip().strip("|").split("|")] == want:
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                cells = re.split(r"(?<!\\)\|", row.strip()[1:-1])
                rows.append([c.strip().replace("\\|", "|") for c in cells])
            return rows
    raise AssertionError(f"no table with header {header!r}")


def cell_name(cell: str) -> str:
    return re.sub(r"<a name=\"[^\"]*\"></a>|[\[\]`]|\(#[^)]*\)", "", cell).strip()


def plain(text: str) -> str:
    return " ".join(re.sub(r"<br\s*/?>", " ", text).split())


@pytest.mark.parametrize("root", ROOTS, ids=ROOT_IDS)
def test_readme_tables_match_code(root: Path) -> None:
    readme = (root / "README.md").read_text()
    variables = root_blocks(root, "variable")
    inputs = markdown_table(readme, "| Name | Description | Type | Default | Required |")
    documented = {cell_name(r[0]): r for r in inputs}
    assert documented.keys() == variables.keys(), (
        f"README inputs differ: missing {variables.keys() - documented.keys()}, "
        f"stale {documented.keys() - variables.keys()}"
    )
    for name, body in variables.items():
        _, description, type_cell, default, required = documented[name]
        assert required == ("no" if "default" in body else "yes"), f"input {name}: Required column is wrong"
        assert (default == "n/a") == ("default" not in body), f"input {name}: Default column is wrong"
        assert plain(description) == plain(unquote(body["description"])), f"input {name}: description differs"
        assert type_head(type_cell.strip("`")) == type_head(body["type"]), f"input {name}: type differs"

    outputs = root_blocks(root, "output")
    documented_out = {cell_name(r[0]): r for r in markdown_table(readme, "| Name | Description |")}
    assert documented_out.keys() == outputs.keys(), (
        f"README outputs differ: missing {outputs.keys() - documented_out.keys()}, "
        f"stale {documented_out.keys() - outputs.keys()}"
    )
    for name, body in outputs.items():
        assert plain(documented_out[name][1]) == plain(unquote(body["description"])), (
            f"output {name}: differs"
        )


def test_example_readme_covers_the_operator_path() -> None:
    readme = (TERRAFORM / "examples" / "aws-eks" / "README.md").read_text()
    lowered = readme.lower()
    for needle in (
        "cost",
        "terraform destroy",
        "kubeconfig_command",
        "grafana",
        "docs/terraform.md",
        "terraform apply",
    ):
        assert needle in lowered, f"examples/aws-eks/README.md does not mention {needle!r}"
    assert (REPO / "docs" / "terraform.md").is_file()
