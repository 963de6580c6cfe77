"""A tiny offline stand-in for `kubectl kustomize`, for the subset deploy/k8s uses.

Supported: ``resources`` (files), ``configMapGenerator`` (``files``, ``literals``) with
``generatorOptions`` (``disableNameSuffixHash: true`` required; ``labels``, ``annotations``) and
``images`` (``name``, ``newName``, ``newTag``, ``digest``). Anything else raises RenderError, so
the renderer can never silently drop what kustomize would apply. tests/test_deploy.py compares its
output with ``kubectl kustomize`` where kubectl is installed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

_KUSTOMIZATION_KEYS = {
    "apiVersion", "kind", "resources", "configMapGenerator", "generatorOptions", "images"
}  # fmt: skip


class RenderError(Exception):
    """The kustomization uses something this renderer does not do, or refers to nothing."""


def render(directory: Path) -> list[Resource]:
    """The resources ``kubectl kustomize directory`` produces, for the subset used here."""
    kustomization = _load_one(directory / "kustomization.yaml")
    unknown = sorted(set(kustomization) - _KUSTOMIZATION_KEYS)
    if unknown:
        raise RenderError(f"kustomization.yaml: unsupported key(s) {unknown}: use kustomize")
    options = kustomization.get("generatorOptions") or {}
    if set(options) - {"disableNameSuffixHash", "labels", "annotations"}:
        raise RenderError(f"generatorOptions: unsupported key(s) {sorted(options)}")
    if options.get("disableNameSuffixHash") is not True:
        raise RenderError("generatorOptions.disableNameSuffixHash must be true (no name hashing)")
    generated = [
        _config_map(directory, spec, options)
        for spec in kustomization.get("configMapGenerator") or []
    ]
    resources: list[Resource] = []
    for entry in kustomization.get("resources") or []:
        path = directory / entry
        if not path.is_file():
            raise RenderError(f"resources: {entry} is not a file in {directory}")
        resources.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    rendered = generated + resources
    for image in kustomization.get("images") or []:
        _set_image(rendered, image)
    return rendered


def _load_one(path: Path) -> Resource:
    if not path.is_file():
        raise RenderError(f"{path} does not exist")
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise RenderError(f"{path}: not a mapping")
    return document


def _config_map(directory: Path, spec: Resource, options: Resource) -> Resource:
    if set(spec) - {"name", "files", "literals"}:
        raise RenderError(
            f"configMapGenerator {spec.get('name')}: unsupported key(s) {sorted(spec)}"
        )
    data: dict[str, str] = {}
    for entry in spec.get("files") or []:
        key, _, source = entry.rpartition("=")
        path = directory / source
        if not path.is_file():
            raise RenderError(f"configMapGenerator {spec['name']}: {source} is not a file")
        data[key or path.name] = path.read_text()
    for literal in spec.get("literals") or []:
        key, _, value = literal.partition("=")
        data[key] = value
    metadata: Resource = {"name": spec["name"]}
    for field in ("labels", "annotations"):
        if options.get(field):
            metadata[field] = dict(options[field])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def _set_image(resources: list[Resource], image: Resource) -> None:
    for _, pod in pod_specs(resources):
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            reference = container.get("image", "")
            name = re.split(r"@|:(?=[^/]*$)", reference, maxsplit=1)[0]
            if name != image["name"]:
                continue
            rest = reference[len(name) :]
            if "newTag" in image:
                rest = f":{image['newTag']}"
            if "digest" in image:
                rest = f"@{image['digest']}"
            container["image"] = image.get("newName", name) + rest


def pod_specs(resources: list[Resource]) -> Iterator[tuple[Resource, Resource]]:
    """Each (resource, pod spec) pair: Pods, CronJobs and everything with spec.template."""
    for resource in resources:
        spec = resource.get("spec") or {}
        if resource.get("kind") == "Pod":
            yield resource, spec
        elif resource.get("kind") == "CronJob":
            yield (
                resource,
                spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {}),
            )
        elif isinstance(spec.get("template"), dict):
            yield resource, spec["template"].get("spec", {})
