#!/usr/bin/env python3
"""Validate the Kubernetes manifests offline: the schema, and what the schema cannot say.

    python scripts/validate-k8s.py [deploy/k8s]        (make deploy-check; tests/test_deploy.py too)

1. Render the kustomization with scripts/k8s_render.py (no kustomize needed; it does the subset
   used here and refuses anything else).
2. Validate every rendered resource with kubernetes-validate (pinned in pyproject's dev extra)
   in strict mode (unknown fields rejected) against the oldest and the newest Kubernetes it
   checks; a missing schema (unknown kind or apiVersion) is a failure, not a warning.
3. Check what the schema leaves out: cron syntax and time zone, enum values (concurrencyPolicy,
   restartPolicy, imagePullPolicy, seccomp, access modes...), quantities with requests <= limits,
   names, references (volumes, ConfigMaps, PVCs), and the project's rules for each CronJob: a
   hardened securityContext (non-root, read-only root, no capabilities), the job's deadlines, the
   ED_EXTRACTOR_* variables (real settings, valid values) and the sources.toml the ConfigMap
   carries (parsed by ed-extractor itself); and for the EDDN recorders (a StatefulSet, or a
   Deployment rolled with maxUnavailable 0): two or more replicas, each its own replica name,
   anti-affinity on the host name, a PodDisruptionBudget keeping one, a ReadWriteMany claim, the
   `eddn merge` CronJob on that claim, the same securityContext and settings.

Prints one line per problem; exit status 0 when there is none, 1 otherwise.
"""

from __future__ import annotations

import re
import sys
import zoneinfo
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, all_versions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from k8s_render import RenderError, Resource, pod_specs, render

OLDEST_KUBERNETES = "1.30.0"  # the oldest minor release still supported by the big providers
# The release the Indexed CronJob is written for: backoffLimitPerIndex (with podFailurePolicy's
# FailIndex) is generally available from 1.33 on; every resource is also checked against it.
INDEXED_JOB_KUBERNETES = "1.33.0"

# --- the schema ------------------------------------------------------------------------------


def schema_problems(resources: list[Resource]) -> list[str]:
    """kubernetes-validate --strict against the oldest, 1.33 and the newest, warnings fatal."""
    wanted = (OLDEST_KUBERNETES, INDEXED_JOB_KUBERNETES, all_versions()[-1])
    versions = sorted({v for v in all_versions() if v in wanted}, key=all_versions().index)
    if len(versions) != len(set(wanted)):
        return [f"kubernetes-validate has no schema for one of {', '.join(wanted)}"]
    problems = []
    for resource in resources:
        for version in versions:
            where = f"{kind_name(resource)} (Kubernetes {version})"
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except ValidationError as exc:
                path = ".".join(str(part) for part in exc.path)
                problems.append(f"{where}: {path}: {exc.message}")
            except SchemaNotFoundError as exc:
                problems.append(f"{where}: {exc.message}")
    return problems


def kind_name(resource: Resource) -> str:
    return f"{resource.get('kind')}/{(resource.get('metadata') or {}).get('name')}"


# --- what the schema does not check ----------------------------------------------------------

ENUMS = {
    "concurrencyPolicy": {"Allow", "Forbid", "Replace"},
    "restartPolicy": {"Always", "OnFailure", "Never"},
    "imagePullPolicy": {"Always", "IfNotPresent", "Never"},
    "fsGroupChangePolicy": {"OnRootMismatch", "Always"},
    "seccompProfile.type": {"RuntimeDefault", "Localhost", "Unconfined"},
    "accessModes": {"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"},
    "volumeMode": {"Filesystem", "Block"},
    "emptyDir.medium": {"", "Memory"},
    "podFailurePolicy.action": {"FailJob", "FailIndex", "Ignore", "Count"},
    "onExitCodes.operator": {"In", "NotIn"},
}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SUFFIX = {
    "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def quantity(value: object) -> float | None:
    """A Kubernetes quantity ("500m", "768Mi", 2) as a number, None if it is not one."""
    match = _QUANTITY.match(str(value))
    return None if match is None else float(match.group(1)) * _SUFFIX[match.group(3) or ""]


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_FIELDS = (  # name, lowest, highest, names (robfig/cron's standard parser, as Kubernetes)
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _WEEKDAYS),
)
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def cron_problems(schedule: str) -> list[str]:
    """What is wrong with a CronJob schedule (five fields or a macro); empty when valid."""
    if re.match(r"^\s*(CRON_)?TZ=", schedule):
        return ["schedule: TZ= is not allowed, use spec.timeZone"]
    if schedule.strip() in _CRON_MACROS:
        return []
    fields = schedule.split()
    if len(fields) != 5:
        return [f"schedule {schedule!r}: expected 5 fields, got {len(fields)}"]
    problems = []
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            problem = _cron_part(
                part, low, high, names, name == "day of month" or name == "day of week"
            )
            if problem:
                problems.append(f"schedule {schedule!r}: {name} {part!r}: {problem}")
    return problems


def _cron_part(
    part: str, low: int, high: int, names: tuple[str, ...] | list[str], any_ok: bool
) -> str | None:
    span, _, step = part.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        return "step must be a positive integer"
    if span == "*" or (span == "?" and any_ok):
        return None
    bounds = span.split("-")
    if len(bounds) > 2:
        return "malformed range"
    values = []
    for bound in bounds:
        if bound.upper() in names:
            values.append(names.index(bound.upper()) + low)
        elif bound.isdigit():
            values.append(int(bound))
        else:
            return f"not a number{' or name' if names else ''}"
    if any(not low <= value <= high for value in values):
        return f"out of range {low}-{high}"
    if len(values) == 2 and values[0] > values[1]:
        return "range runs backwards"
    return None


def rule_problems(resources: list[Resource]) -> list[str]:
    """Names, enums, quantities and references of every resource (no project policy)."""
    problems = []
    names = {(r.get("kind"), (r.get("metadata") or {}).get("name")) for r in resources}
    for resource in resources:
        where = kind_name(resource)
        name = (resource.get("metadata") or {}).get("name") or ""
        if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
            problems.append(f"{where}: metadata.name is not a DNS-1123 subdomain")
        if resource.get("kind") == "CronJob":
            problems += _cron_job_rules(resource, where)
        if resource.get("kind") == "PersistentVolumeClaim":
            spec = resource.get("spec", {})
            problems += _enum(where, "accessModes", *spec.get("accessModes", []))
            problems += _enum(where, "volumeMode", spec.get("volumeMode"))
            if quantity(spec.get("resources", {}).get("requests", {}).get("storage")) is None:
                problems.append(f"{where}: spec.resources.requests.storage is not a quantity")
    for resource, pod in pod_specs(resources):
        problems += _pod_rules(pod, kind_name(resource), names, resource.get("kind") == "CronJob")
    return problems


def _enum(where: str, field: str, *values: object) -> list[str]:
    allowed = ENUMS[field]
    return [
        f"{where}: {field} {value!r} is not one of {sorted(allowed)}"
        for value in values
        if value is not None and value not in allowed
    ]


def _cron_job_rules(resource: Resource, where: str) -> list[str]:
    spec = resource.get("spec", {})
    problems = [f"{where}: {p}" for p in cron_problems(str(spec.get("schedule", "")))]
    problems += _enum(where, "concurrencyPolicy", spec.get("concurrencyPolicy"))
    if len(resource["metadata"]["name"]) > 52:
        problems.append(f"{where}: a CronJob name must be at most 52 characters")
    zone = spec.get("timeZone")
    if zone is not None:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(f"{where}: timeZone {zone!r} is not an IANA time zone")
    return problems


def _pod_rules(pod: Resource, where: str, names: set[tuple[Any, Any]], in_job: bool) -> list[str]:
    problems = _enum(where, "restartPolicy", pod.get("restartPolicy"))
    if in_job and pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(f"{where}: a Job's pods need restartPolicy Never or OnFailure")
    context = pod.get("securityContext", {})
    problems += _enum(where, "fsGroupChangePolicy", context.get("fsGroupChangePolicy"))
    problems += _enum(where, "seccompProfile.type", context.get("seccompProfile", {}).get("type"))
    volumes = {}
    for volume in pod.get("volumes", []):
        if volume["name"] in volumes:
            problems.append(f"{where}: volume {volume['name']!r} is declared twice")
        volumes[volume["name"]] = volume
        if "configMap" in volume and ("ConfigMap", volume["configMap"]["name"]) not in names:
            problems.append(f"{where}: ConfigMap {volume['configMap']['name']!r} is not rendered")
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if claim is not None and ("PersistentVolumeClaim", claim) not in names:
            problems.append(f"{where}: PersistentVolumeClaim {claim!r} is not rendered")
        if "emptyDir" in volume:
            problems += _enum(where, "emptyDir.medium", volume["emptyDir"].get("medium"))
    used = set()
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        at = f"{where}: container {container.get('name')!r}"
        if not _DNS_LABEL.match(container.get("name", "")):
            problems.append(f"{at}: name is not a DNS-1123 label")
        problems += _enum(at, "imagePullPolicy", container.get("imagePullPolicy"))
        seccomp = container.get("securityContext", {}).get("seccompProfile", {}).get("type")
        problems += _enum(at, "seccompProfile.type", seccomp)
        mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
        if len(mounts) != len(set(mounts)):
            problems.append(f"{at}: a mountPath is used twice")
        for mount in container.get("volumeMounts", []):
            used.add(mount["name"])
            if mount["name"] not in volumes:
                problems.append(f"{at}: volumeMount {mount['name']!r} names no volume")
        env = [variable["name"] for variable in container.get("env", [])]
        if len(env) != len(set(env)):
            problems.append(f"{at}: an environment variable is set twice")
        problems += _resource_rules(container.get("resources", {}), at)
    problems += [
        f"{where}: volume {name!r} is never mounted" for name in sorted(set(volumes) - used)
    ]
    return problems


def _resource_rules(resources: Resource, at: str) -> list[str]:
    problems = []
    for section in ("requests", "limits"):
        for name, value in (resources.get(section) or {}).items():
            if quantity(value) is None:
                problems.append(f"{at}: resources.{section}.{name} {value!r} is not a quantity")
    for name, request in (resources.get("requests") or {}).items():
        limit = (resources.get("limits") or {}).get(name)
        low, high = quantity(request), quantity(limit)
        if low is not None and high is not None and low > high:
            problems.append(f"{at}: resources.requests.{name} {request} exceeds the limit {limit}")
    return problems


# --- the project's rules for its CronJob -----------------------------------------------------


def policy_problems(resources: list[Resource]) -> list[str]:
    """The project's rules for each CronJob, and that all of them share one volume."""
    jobs = [r for r in resources if r.get("kind") == "CronJob"]
    if not jobs:
        return ["expected a CronJob, found none"]
    problems = [p for job in jobs for p in _job_policy_problems(job, resources)]
    claims = {kind_name(job): _dest_claim(job) for job in jobs
              if not _lands_in_object_store(job) and not _is_eddn_job(job)}  # fmt: skip
    if len(set(claims.values())) > 1:
        problems.append(
            "the CronJobs with a local destination must keep ED_EXTRACTOR_DEST on the same "
            "PersistentVolumeClaim: "
            + ", ".join(f"{where}: {claim}" for where, claim in sorted(claims.items()))
        )
    return problems


def _job_env(job: Resource) -> tuple[Resource, Resource, dict[str, str]]:
    """A CronJob's pod spec, its first container and that container's literal variables."""
    pod = job["spec"].get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    container = (pod.get("containers") or [{}])[0]
    return pod, container, {v["name"]: v.get("value", "") for v in container.get("env", [])}


def _lands_in_object_store(job: Resource) -> bool:
    """True when a job's ED_EXTRACTOR_DEST is s3://BUCKET/PREFIX (no PVC to share)."""
    return _job_env(job)[2].get("ED_EXTRACTOR_DEST", "").startswith("s3://")


def _dest_claim(job: Resource) -> str | None:
    """The PVC mounted at a job's ED_EXTRACTOR_DEST (the settings' default when unset)."""
    pod, container, env = _job_env(job)
    dest = env.get("ED_EXTRACTOR_DEST") or "data"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if mount["mountPath"] == dest:
            claim = volumes.get(mount["name"], {}).get("persistentVolumeClaim", {})
            name = claim.get("claimName")
            return name if isinstance(name, str) else None
    return None


def _job_policy_problems(job: Resource, resources: list[Resource]) -> list[str]:
    """The project's requirements for one CronJob, its settings and sources."""
    where = kind_name(job)
    spec = job["spec"]
    job_spec = spec.get("jobTemplate", {}).get("spec", {})
    pod = job_spec.get("template", {}).get("spec", {})
    problems = []
    if spec.get("concurrencyPolicy") != "Forbid":
        problems.append(f"{where}: concurrencyPolicy must be Forbid (one writer of /data)")
    indexed = job_spec.get("completionMode") == "Indexed"
    for field, owner in [
        ("startingDeadlineSeconds", spec),
        ("backoffLimitPerIndex" if indexed else "backoffLimit", job_spec),
        ("activeDeadlineSeconds", job_spec),
        ("ttlSecondsAfterFinished", job_spec),
    ]:
        if not isinstance(owner.get(field), int):
            problems.append(f"{where}: {field} must be set")
    if pod.get("restartPolicy") != "Never":
        problems.append(f"{where}: restartPolicy must be Never")
    containers = pod.get("containers", [])
    if len(containers) != 1:
        return [*problems, f"{where}: expected one container"]
    container = containers[0]
    problems += _container_problems(where, pod, container)
    problems += _shard_problems(where, job_spec, container)
    return problems + _settings_problems(where, resources, pod, container, job_spec)


def _shard_problems(where: str, job_spec: Resource, container: Resource) -> list[str]:
    """An Indexed Job: one completion per shard, all at once, exit 2 never retried, an object store.

    ``ed-extractor run`` takes its shard from JOB_COMPLETION_INDEX with ED_EXTRACTOR_SHARDS; any
    other Job must leave ED_EXTRACTOR_SHARDS unset (its pods would have no index: exit 2).
    """
    env = {v["name"]: v.get("value", "") for v in container.get("env", [])}
    shards = env.get("ED_EXTRACTOR_SHARDS", "")
    if job_spec.get("completionMode") != "Indexed":
        if shards:
            return [f"{where}: ED_EXTRACTOR_SHARDS needs completionMode Indexed (no index else)"]
        return []
    problems = []
    completions = job_spec.get("completions")
    if not isinstance(completions, int) or job_spec.get("parallelism") != completions:
        problems.append(f"{where}: completions and parallelism must both be the number of shards")
    if shards != str(completions):
        problems.append(f"{where}: ED_EXTRACTOR_SHARDS must equal completions ({completions})")
    if not env.get("ED_EXTRACTOR_DEST", "").startswith("s3://"):
        problems.append(
            f"{where}: the shards of an Indexed Job need an s3:// ED_EXTRACTOR_DEST "
            "(a local folder holds one shard)"
        )
    return problems + _failure_policy_problems(where, job_spec, container.get("name"))


def _failure_policy_problems(where: str, job_spec: Resource, name: object) -> list[str]:
    """podFailurePolicy: exit code 2 (a configuration error) fails the index without a retry."""
    rules = (job_spec.get("podFailurePolicy") or {}).get("rules", [])
    problems = []
    fails_on_usage = False
    for rule in rules:
        problems += _enum(where, "podFailurePolicy.action", rule.get("action"))
        codes = rule.get("onExitCodes") or {}
        problems += _enum(where, "onExitCodes.operator", codes.get("operator"))
        fails_on_usage |= (
            rule.get("action") == "FailIndex"
            and codes.get("operator") == "In"
            and 2 in codes.get("values", [])
            and codes.get("containerName", name) == name
        )
    if not fails_on_usage:
        problems.append(
            f"{where}: podFailurePolicy needs a FailIndex rule on exit code 2 of container "
            f"{name!r} (a configuration error must not be retried)"
        )
    return problems


def _container_problems(where: str, pod: Resource, container: Resource) -> list[str]:
    """The securityContext, the cpu/memory requests and limits, the image replaced."""
    problems = _security_problems(where, pod.get("securityContext", {}), container)
    for section in ("requests", "limits"):
        for name in ("cpu", "memory"):
            if name not in (container.get("resources", {}).get(section) or {}):
                problems.append(f"{where}: resources.{section}.{name} must be set")
    if container.get("image", "").split(":")[0] == "ed-extractor":
        problems.append(f"{where}: the image placeholder was not replaced (kustomization images)")
    return problems


def _security_problems(where: str, pod_context: Resource, container: Resource) -> list[str]:
    context = container.get("securityContext", {})

    def effective(key: str) -> Any:
        return context.get(key, pod_context.get(key))

    problems = []
    if effective("runAsNonRoot") is not True:
        problems.append(f"{where}: securityContext.runAsNonRoot must be true")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: securityContext.readOnlyRootFilesystem must be true")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: securityContext.allowPrivilegeEscalation must be false")
    if "ALL" not in context.get("capabilities", {}).get("drop", []):
        problems.append(f"{where}: securityContext.capabilities.drop must include ALL")
    if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: securityContext.seccompProfile.type must be RuntimeDefault")
    return problems


def _settings_problems(
    where: str, resources: list[Resource], pod: Resource, container: Resource, job_spec: Resource
) -> list[str]:
    from ed_extractor.errors import ConfigError
    from ed_extractor.settings import ENV_PREFIX, Settings, parse_sources

    problems = []
    env = {v["name"]: v.get("value", "") for v in container.get("env", [])}
    fields = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        field = name.removeprefix(ENV_PREFIX).lower()
        if field not in Settings.model_fields:
            problems.append(f"{where}: {name} is not a setting of ed-extractor")
        elif value != "":  # the settings ignore empty variables
            fields[field] = value
    try:
        settings = Settings(**fields)
    except ConfigError as exc:
        return [*problems, f"{where}: {exc}"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: volumes.get(m["name"], {}) for m in container.get("volumeMounts", [])}
    if settings.dest_url is not None:
        problems += _object_store_problems(where, volumes, mounts, container, settings.dest)
    elif "persistentVolumeClaim" not in mounts.get(str(settings.dest), {}):
        problems.append(f"{where}: ED_EXTRACTOR_DEST {settings.dest} is not a PVC mount")
    tmp = env.get("TMPDIR", "/tmp")
    if "emptyDir" not in mounts.get(tmp, {}):
        problems.append(f"{where}: TMPDIR {tmp} is not an emptyDir mount")
    deadline = job_spec.get("activeDeadlineSeconds")
    late = isinstance(deadline, int) and (settings.deadline_s or 0) >= deadline
    if late:
        problems.append(
            f"{where}: ED_EXTRACTOR_DEADLINE_S must end the run before the job's deadline"
        )
    if isinstance(deadline, int) and settings.lock_wait_s >= deadline:
        problems.append(
            f"{where}: ED_EXTRACTOR_LOCK_WAIT_S must end the wait before the job's deadline"
        )
    if settings.config is None:
        return problems
    mount = str(settings.config.parent)
    config_map = mounts.get(mount, {}).get("configMap", {}).get("name")
    data = next(
        (r.get("data", {}) for r in resources
         if r.get("kind") == "ConfigMap" and r["metadata"]["name"] == config_map),
        None,
    )  # fmt: skip
    if data is None or settings.config.name not in data:
        problems.append(
            f"{where}: ED_EXTRACTOR_CONFIG {settings.config} is in no mounted ConfigMap"
        )
        return problems
    try:
        parse_sources(data[settings.config.name], origin=f"ConfigMap/{config_map}")
    except ConfigError as exc:
        problems.append(str(exc))
    return problems


AWS_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def _object_store_problems(
    where: str, volumes: Resource, mounts: Resource, container: Resource, scratch: Path
) -> list[str]:
    """An s3:// destination: scratch on a bounded emptyDir, no PVC, credentials from a Secret."""
    problems = []
    scratch_volume = mounts.get(str(scratch), {})
    if "emptyDir" not in scratch_volume:
        problems.append(
            f"{where}: ED_EXTRACTOR_SCRATCH {scratch} is not an emptyDir mount "
            "(an s3:// destination keeps only scratch in the pod)"
        )
    elif quantity(scratch_volume["emptyDir"].get("sizeLimit")) is None:
        problems.append(f"{where}: the scratch emptyDir needs a sizeLimit")
    claims = sorted(n for n, v in volumes.items() if "persistentVolumeClaim" in v)
    if claims:
        problems.append(f"{where}: an s3:// destination needs no PVC, found {', '.join(claims)}")
    for variable in container.get("env", []):
        from_secret = "secretKeyRef" in (variable.get("valueFrom") or {})
        if variable["name"] in AWS_CREDENTIALS and ("value" in variable or not from_secret):
            problems.append(f"{where}: {variable['name']} must come from a Secret (secretKeyRef)")
    return problems


# --- the project's rules for the EDDN recorders --------------------------------------------

EDDN_MERGE_ARGS = ["eddn", "merge", "--dest", "/data", "--json"]
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"


def _is_eddn_job(job: Resource) -> bool:
    """A CronJob running ``ed-extractor eddn ...`` (the merge): on the recorders' volume."""
    args: list[str] = _job_env(job)[1].get("args", [])
    return args[:1] == ["eddn"]


def _recorders(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if r.get("kind") in ("StatefulSet", "Deployment")]


def eddn_problems(resources: list[Resource]) -> list[str]:
    """The EDDN recorders (two or more at once, hardened, on a shared PVC), their PDB and merge."""
    problems = []
    for recorders in _recorders(resources):
        where = kind_name(recorders)
        spec = recorders.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        problems += _rollout_problems(where, recorders)
        problems += _spread_problems(where, resources, recorders)
        if not isinstance(pod.get("terminationGracePeriodSeconds"), int):
            problems.append(f"{where}: terminationGracePeriodSeconds must be set")
        containers = pod.get("containers", [])
        if len(containers) != 1:
            problems.append(f"{where}: expected one container")
            continue
        container = containers[0]
        args = container.get("args", [])
        if args[:1] != ["eddn"] or "--duration" in args:
            problems.append(f"{where}: args must run `eddn` without --duration (until SIGTERM)")
        problems += _replica_name_problems(where, recorders, container)
        problems += _container_problems(where, pod, container)
        problems += _settings_problems(where, resources, pod, container, {})
    return problems + _merge_job_problems(resources)


def _rollout_problems(where: str, recorders: Resource) -> list[str]:
    """Never fewer than one recorder: 2+ replicas, replaced one at a time (or surged)."""
    spec = recorders.get("spec", {})
    problems = []
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 2:
        problems.append(f"{where}: replicas must be at least 2 (EDDN has no replay)")
    if recorders.get("kind") == "StatefulSet":
        if spec.get("podManagementPolicy") != "Parallel":
            problems.append(f"{where}: podManagementPolicy must be Parallel")
        if spec.get("updateStrategy", {}).get("type", "RollingUpdate") != "RollingUpdate":
            problems.append(
                f"{where}: updateStrategy.type must be RollingUpdate (one pod at a time)"
            )
    else:
        strategy = spec.get("strategy", {})
        rolling = strategy.get("rollingUpdate", {})
        if strategy.get("type") != "RollingUpdate" or rolling.get("maxUnavailable") not in (
            0,
            "0%",
        ):
            problems.append(
                f"{where}: strategy must be RollingUpdate with maxUnavailable 0 (never no recorder)"
            )
    return problems


def _selects(selector: Resource, labels: Resource) -> bool:
    wanted = (selector or {}).get("matchLabels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def _spread_problems(where: str, resources: list[Resource], recorders: Resource) -> list[str]:
    """Anti-affinity on the host name, a PDB keeping one, a ReadWriteMany claim shared by all."""
    template = recorders.get("spec", {}).get("template", {})
    labels = template.get("metadata", {}).get("labels", {})
    pod = template.get("spec", {})
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    terms = [
        t.get("podAffinityTerm", {})
        for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    ]
    terms += anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])  # fmt: skip
    problems = []
    spread = [t for t in terms if t.get("topologyKey") == HOSTNAME_TOPOLOGY]
    if not any(_selects(t.get("labelSelector"), labels) for t in spread):
        problems.append(
            f"{where}: podAntiAffinity on {HOSTNAME_TOPOLOGY} selecting its own pods is needed"
        )
    budgets = [r for r in resources if r.get("kind") == "PodDisruptionBudget"
               and _selects(r.get("spec", {}).get("selector"), labels)]  # fmt: skip
    if not any(b["spec"].get("minAvailable") == 1 for b in budgets):
        problems.append(f"{where}: a PodDisruptionBudget with minAvailable 1 must select its pods")
    claim = _recorders_claim(recorders)
    [pvc] = [r for r in resources if kind_name(r) == f"PersistentVolumeClaim/{claim}"] or [{}]
    if "ReadWriteMany" not in pvc.get("spec", {}).get("accessModes", []):
        problems.append(f"{where}: PersistentVolumeClaim {claim} must be ReadWriteMany (shared)")
    return problems


def _replica_name_problems(where: str, recorders: Resource, container: Resource) -> list[str]:
    """Each pod its own replica name: the pod's name (downward API), or the host name default."""
    args = container.get("args", [])
    if "--replica" not in args:
        if recorders.get("kind") == "StatefulSet":
            return []  # the default, the host name, is the pod's stable name
        return [f"{where}: --replica $(POD_NAME) is needed (a Deployment's host names change)"]
    value = args[args.index("--replica") + 1] if args.index("--replica") + 1 < len(args) else ""
    variable = value.removeprefix("$(").removesuffix(")")
    field = next((v.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                  for v in container.get("env", []) if v["name"] == variable), None)  # fmt: skip
    if not value.startswith("$(") or field != "metadata.name":
        return [f"{where}: --replica must be $(VAR) with VAR from the downward API metadata.name"]
    return []


def _recorders_claim(recorders: Resource) -> str | None:
    volumes = recorders.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
    claims = [v["persistentVolumeClaim"].get("claimName")
              for v in volumes if "persistentVolumeClaim" in v]  # fmt: skip
    return claims[0] if len(claims) == 1 else None


def _merge_job_problems(resources: list[Resource]) -> list[str]:
    """One `eddn merge` CronJob on the recorders' volume, with exactly the merge's arguments."""
    jobs = [r for r in resources if r.get("kind") == "CronJob" and _is_eddn_job(r)]
    claims = {_recorders_claim(r) for r in _recorders(resources)}
    if claims and not jobs:
        return ["expected a CronJob running `eddn merge` beside the EDDN recorders"]
    problems = []
    for job in jobs:
        where = kind_name(job)
        if _job_env(job)[1].get("args") != EDDN_MERGE_ARGS:
            problems.append(f"{where}: args must be {EDDN_MERGE_ARGS}")
        if _dest_claim(job) not in claims:
            problems.append(
                f"{where}: ED_EXTRACTOR_DEST must be on the recorders' PersistentVolumeClaim "
                f"({', '.join(sorted(str(c) for c in claims))}), found {_dest_claim(job)}"
            )
    return problems


def problems_of(directory: Path) -> tuple[list[Resource], list[str]]:
    """Render ``directory`` and collect every problem (empty when valid)."""
    try:
        resources = render(directory)
    except (RenderError, yaml.YAMLError) as exc:
        return [], [f"render: {exc}"]
    return resources, [
        *schema_problems(resources),
        *rule_problems(resources),
        *policy_problems(resources),
        *eddn_problems(resources),
    ]


def main(argv: list[str]) -> int:
    directory = Path(argv[1] if len(argv) > 1 else "deploy/k8s")
    resources, problems = problems_of(directory)
    for problem in problems:
        print(f"validate-k8s: {problem}", file=sys.stderr)
    if problems:
        return 1
    names = ", ".join(kind_name(r) for r in resources)
    print(
        f"validate-k8s: {directory}: {len(resources)} resources valid "
        f"(kubernetes-validate {kubernetes_validate.__version__} --strict, Kubernetes "
        f"{OLDEST_KUBERNETES}, {INDEXED_JOB_KUBERNETES} and {all_versions()[-1]}; cron, enums, "
        f"references, policy): {names}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
