"""Renders helm/ember with the real Helm engine (helm-python-sdk embeds Helm's Go
library: no helm binary), as `helm template -f FILE --set K=V` would."""

from pathlib import Path

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "ember"
RELEASE = "ember"
NAMESPACE = "ember"


def merge(into, more):
    """Helm's merge of several -f files: maps key by key, anything else replaced."""
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into


def values(files=(), sets=()):
    out = {}
    for f in files:
        merge(out, yaml.safe_load((CHART / f).read_text()) or {})
    for s in sets:
        merge(out, helm.parse_set_string(s))
    return out


def render(files=(), sets=(), release=RELEASE, namespace=NAMESPACE):
    """Returns the rendered objects (templates/NOTES.txt left out)."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values(files, sets), name=release, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def render_error(files=(), sets=()):
    """Returns the message of a render that must fail."""
    try:
        render(files, sets)
    except helm.HelmError as e:
        return str(e)
    raise AssertionError(f"rendering with {files} {sets} succeeded, expected a failure")


def lint(files=(), sets=()):
    return helm.lint(CHART, values(files, sets), strict=True, namespace=NAMESPACE)


def by_kind(objects, kind):
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


# Object storage in S3 with credentials from an existing Secret: what the
# microservices install command in helm/ember/README.md sets.
S3_SETS = (
    "storage.backend=s3",
    "storage.s3.bucket_name=ember-profiles",
    "storage.s3.endpoint=s3.example.com:9000",
    "storage.s3.existingSecret=ember-s3",
)
MICRO = ("values-micro-services.yaml",)
