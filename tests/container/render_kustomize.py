#!/usr/bin/env python3
"""Render deploy/ kustomizations without kubectl/kustomize.

No kustomize binary can be installed here (only PyPI/crates.io/Debian/npm are
reachable), so this renders the small subset of kustomize the manifests use,
with kustomize's semantics, and refuses anything else so the two cannot drift
silently:

- ``resources``: YAML files, or directories holding a kustomization.yaml
  (rendered recursively);
- ``namespace``: set on every namespaced object (a Namespace object is
  renamed to it, as kustomize does);
- ``patches`` with a ``path`` (a strategic-merge patch whose kind and
  metadata.name pick the target): maps merge recursively, lists of maps that
  all carry a ``name`` merge by name (containers, env, volumes, ports...), any
  other list is replaced, ``null`` deletes a key;
- ``images``: ``name`` / ``newName`` / ``newTag`` / ``digest``.

Usage: render_kustomize.py DIR  -> multi-document YAML on stdout.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import yaml

ALLOWED_KEYS = {"apiVersion", "kind", "namespace", "resources", "patches", "images"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
    "PersistentVolume",
    "RuntimeClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
# kustomize's legacy output order (the kinds used here, then everything else).
ORDER = [
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "Service",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
]


class RenderError(Exception):
    pass


def _load_docs(path: Path) -> list[dict]:
    with path.open() as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise RenderError(f"{path}: not a Kubernetes object")
    return docs


def _merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = _merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and base
        and patch
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    ):
        out = [copy.deepcopy(x) for x in base]
        index = {x["name"]: i for i, x in enumerate(out)}
        for item in patch:
            if item["name"] in index:
                out[index[item["name"]]] = _merge(out[index[item["name"]]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def _split_image(image: str) -> tuple[str, str, str]:
    """-> (name, tag, digest); tag/digest '' when absent."""
    digest = ""
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = ""
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image, tag = image.rsplit(":", 1)
    return image, tag, digest


def _set_images(docs: list[dict], images: list[dict]) -> None:
    for spec in images:
        unknown = set(spec) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise RenderError(f"images: unsupported keys {sorted(unknown)}")
        for doc in docs:
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                name, tag, digest = _split_image(c["image"])
                if name != spec["name"]:
                    continue
                name = spec.get("newName", name)
                if "newTag" in spec:
                    tag, digest = str(spec["newTag"]), ""
                if "digest" in spec:
                    tag, digest = "", spec["digest"]
                c["image"] = (
                    name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
                )


def render(directory: Path) -> list[dict]:
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    k = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(k) - ALLOWED_KEYS
    if unknown:
        raise RenderError(f"{kfile}: unsupported kustomization keys {sorted(unknown)}")
    docs: list[dict] = []
    for res in k.get("resources", []):
        p = (directory / res).resolve()
        docs.extend(render(p) if p.is_dir() else _load_docs(p))
    for patch in k.get("patches", []):
        if set(patch) != {"path"}:
            raise RenderError(f"{kfile}: only `patches: - path: FILE` is supported")
        for pdoc in _load_docs(directory / patch["path"]):
            key = (pdoc["kind"], pdoc["metadata"]["name"])
            hits = [
                i
                for i, d in enumerate(docs)
                if (d["kind"], d["metadata"]["name"]) == key
            ]
            if len(hits) != 1:
                raise RenderError(
                    f"{kfile}: patch {patch['path']} matches {len(hits)} objects"
                )
            docs[hits[0]] = _merge(docs[hits[0]], pdoc)
    if "namespace" in k:
        for d in docs:
            if d["kind"] == "Namespace":
                d["metadata"]["name"] = k["namespace"]
            elif d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]
    _set_images(docs, k.get("images", []))
    seen = set()
    for d in docs:
        key = (
            d["apiVersion"].split("/")[0],
            d["kind"],
            d["metadata"].get("namespace"),
            d["metadata"]["name"],
        )
        if key in seen:
            raise RenderError(f"{kfile}: duplicate object {key}")
        seen.add(key)
    return sorted(
        docs,
        key=lambda d: (
            ORDER.index(d["kind"]) if d["kind"] in ORDER else len(ORDER),
            d["kind"],
            d["metadata"]["name"],
        ),
    )


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    try:
        docs = render(Path(sys.argv[1]))
    except (RenderError, OSError, yaml.YAMLError) as e:
        print(f"render_kustomize: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
