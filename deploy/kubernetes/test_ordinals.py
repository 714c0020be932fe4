#!/usr/bin/env python3
"""Checks that the rendered Kubernetes manifests give every dida pod the identity
the cluster expects of it.

    kubectl kustomize deploy/kubernetes | python3 deploy/kubernetes/test_ordinals.py

For each ordinal of the storage StatefulSet it does what Kubernetes does when it
creates the pod: names it `<statefulset>-<ordinal>`, resolves the `fieldRef`
variables (metadata.name, metadata.namespace, status.podIP), expands `$(VAR)` in
env values and args, then reads the flags dida would be given (an argument, else
its DIDA_<ROLE>_<FLAG> variable). It checks that

- the node id is the pod name;
- --url names the pod in its headless Service (which publishes not-ready pods) at
  the port the container exposes and --listen binds;
- --peers lists exactly one entry per ordinal, each with the URL that pod
  advertises, and as many as the StatefulSet has replicas;
- --data-dir lies on the mount of a volumeClaimTemplate, so each ordinal has its
  own volume (`<claim>-<statefulset>-<ordinal>`);
- the PodDisruptionBudget selects these pods and lets at most one go;

then the same for a worker pod (id from its pod name, URL through its headless
Service, scheduler URL through the scheduler's Service, a grace period longer than
its drain) and the scheduler (URL through its Service), and that both are given
the storage nodes exactly as --peers lists them. Any mismatch is printed and the
exit status is 1. Needs PyYAML.
"""

from __future__ import annotations

import re
import sys
from urllib.parse import urlsplit

import yaml

FAILURES: list[str] = []
PASSED = 0


def fail(message: str) -> None:
    FAILURES.append(message)
    print(f"FAIL: {message}")


def check(condition: bool, message: str) -> bool:
    global PASSED
    if condition:
        PASSED += 1
    else:
        fail(message)
    return condition


# --- Kubernetes' variable expansion -------------------------------------------

VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, variables: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined VAR is replaced, an undefined one
    is left as written, and $$ is a literal $."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return variables.get(name, match.group(0))

    return VAR.sub(replace, text)


def pod_environment(container: dict, pod: dict) -> dict[str, str]:
    """The container's environment as the kubelet builds it: in order, each value
    expanded with the variables defined before it; fieldRefs from `pod`."""
    variables: dict[str, str] = {}
    for entry in container.get("env", []) or []:
        name = entry["name"]
        if "value" in entry:
            variables[name] = expand(str(entry["value"]), variables)
            continue
        field = ((entry.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if field:
            if field not in pod:
                fail(f"{container['name']}: env {name} uses fieldRef {field}, which this test does not simulate")
                continue
            variables[name] = pod[field]
        # secretKeyRef and the like: the value is not known here; leave unset.
    return variables


def flags_of(container: dict, pod: dict, role: str) -> dict[str, str]:
    """The flags dida would see: --flag=value or --flag value in args (after the
    role), else DIDA_<ROLE>_<FLAG> from the environment."""
    env = pod_environment(container, pod)
    command = list(container.get("command", []) or [])
    args = [expand(str(a), env) for a in command + list(container.get("args", []) or [])]
    check(bool(args) and args[0] == role, f"{container['name']}: the first argument must be the role {role!r}, got {args[:1]}")
    flags: dict[str, str] = {}
    i = 1
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            if "=" in arg:
                key, value = arg[2:].split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                key, value = arg[2:], args[i + 1]
                i += 1
            else:
                key, value = arg[2:], "true"
            flags[key] = value
        i += 1
    prefix = f"DIDA_{role.upper()}_"
    for name, value in env.items():
        if name.startswith(prefix):
            flags.setdefault(name[len(prefix):].lower().replace("_", "-"), value)
    for key, value in flags.items():
        check("$(" not in value, f"{container['name']}: --{key} still holds an unexpanded variable: {value}")
    return flags


# --- manifests -----------------------------------------------------------------


def load(stream) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(stream) if doc]


def namespace_of(obj: dict) -> str:
    return obj["metadata"].get("namespace", "default")


def find(objects: list[dict], kind: str, name: str, namespace: str) -> dict | None:
    for obj in objects:
        if obj.get("kind") == kind and obj["metadata"]["name"] == name and namespace_of(obj) == namespace:
            return obj
    return None


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a Service's (plain map) or a workload's (matchLabels) selector
    selects pods with `labels`. matchExpressions are not used by these manifests."""
    if not selector:
        return False
    if "matchExpressions" in selector:
        fail("selectors with matchExpressions are not checked by this test")
        return False
    wanted = selector.get("matchLabels", selector) if "matchLabels" in selector else selector
    return all(labels.get(k) == v for k, v in wanted.items())


def workload(objects: list[dict], role: str) -> dict:
    """The one StatefulSet or Deployment whose container runs `dida ROLE`."""
    found = [
        obj
        for obj in objects
        if obj.get("kind") in ("StatefulSet", "Deployment")
        and any((c.get("args") or [None])[0] == role for c in obj["spec"]["template"]["spec"]["containers"])
    ]
    if len(found) != 1:
        fail(f"expected one StatefulSet or Deployment running `dida {role}`, found {len(found)}")
        sys.exit(report())
    return found[0]


def dida_container(obj: dict, role: str) -> dict:
    return next(c for c in obj["spec"]["template"]["spec"]["containers"] if (c.get("args") or [None])[0] == role)


def container_port(container: dict, port: int) -> dict | None:
    return next((p for p in container.get("ports", []) or [] if p["containerPort"] == port), None)


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def parse_members(text: str) -> dict[str, str]:
    members: dict[str, str] = {}
    for entry in text.split(","):
        node, _, url = entry.partition("=")
        check(node not in members, f"member {node} is listed twice")
        members[node] = url
    return members


def check_service_route(
    objects: list[dict], who: str, url: str, expected_host: str, service_name: str, namespace: str,
    labels: dict, container: dict, listen: str | None, headless: bool,
) -> None:
    """`url` must be `http(s)://expected_host:PORT`, where `service_name` is a
    Service of the namespace selecting pods with `labels`, whose port PORT leads to
    a port of `container`, the one --listen binds."""
    parts = urlsplit(url)
    check(parts.scheme in ("http", "https"), f"{who}: --url {url} is not http:// or https://")
    check(parts.hostname == expected_host, f"{who}: --url host is {parts.hostname}, expected {expected_host}")
    port = parts.port
    check(port is not None, f"{who}: --url {url} has no port")
    if listen is None:
        fail(f"{who}: no --listen")
    else:
        check(port_of(listen) == port, f"{who}: --url port {port} differs from --listen {listen}")
    service = find(objects, "Service", service_name, namespace)
    if not check(service is not None, f"{who}: no Service {service_name} in namespace {namespace}"):
        return
    spec = service["spec"]
    check(selects(spec.get("selector"), labels), f"{who}: Service {service_name} does not select the pod (labels {labels})")
    if headless:
        check(spec.get("clusterIP") == "None", f"{who}: Service {service_name} must be headless (clusterIP: None)")
        check(spec.get("publishNotReadyAddresses") is True,
              f"{who}: Service {service_name} must publish not-ready addresses, or peers cannot resolve a node before it is ready")
    service_port = next((p for p in spec.get("ports", []) if p["port"] == port), None)
    if not check(service_port is not None, f"{who}: Service {service_name} has no port {port}"):
        return
    target = service_port.get("targetPort", port)
    if isinstance(target, str):
        named = next((p for p in container.get("ports", []) or [] if p.get("name") == target), None)
        check(named is not None and named["containerPort"] == port,
              f"{who}: Service {service_name} port {port} targets {target!r}, which is not container port {port}")
    else:
        check(target == port, f"{who}: Service {service_name} port {port} targets {target}, not {port}")
    check(container_port(container, port) is not None, f"{who}: the container does not expose port {port}")


def check_probes(who: str, container: dict, flags: dict[str, str]) -> None:
    metrics = flags.get("metrics-listen")
    if not check(metrics is not None, f"{who}: no --metrics-listen, so no /healthz or /readyz to probe"):
        return
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (container.get(probe) or {}).get("httpGet")
        if not check(get is not None, f"{who}: no HTTP {probe}"):
            continue
        check(get.get("path") == path, f"{who}: {probe} asks {get.get('path')}, expected {path}")
        port = get.get("port")
        if isinstance(port, str):
            port = next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == port), None)
        check(port == port_of(metrics), f"{who}: {probe} port {port} is not the --metrics-listen port {port_of(metrics)}")


def check_tls(who: str, obj: dict, container: dict) -> None:
    """With DIDA_TLS_DIR set, the directory must be a read-only mount of a Secret."""
    tls_dir = next((e.get("value") for e in container.get("env", []) or [] if e["name"] == "DIDA_TLS_DIR"), None)
    if tls_dir is None:
        return
    mount = next((m for m in container.get("volumeMounts", []) or [] if m["mountPath"].rstrip("/") == tls_dir.rstrip("/")), None)
    if not check(mount is not None, f"{who}: DIDA_TLS_DIR {tls_dir} is not a mount"):
        return
    check(mount.get("readOnly") is True, f"{who}: the TLS mount {tls_dir} is not read-only")
    volume = next((v for v in obj["spec"]["template"]["spec"].get("volumes", []) if v["name"] == mount["name"]), None)
    check(volume is not None and "secret" in volume, f"{who}: the TLS mount {tls_dir} is not a Secret volume")


# --- the roles -------------------------------------------------------------------


def check_storage(objects: list[dict]) -> dict[str, str]:
    sts = workload(objects, "storage")
    if not check(sts["kind"] == "StatefulSet", f"storage runs as a {sts['kind']}, not a StatefulSet"):
        sys.exit(report())
    name, namespace = sts["metadata"]["name"], namespace_of(sts)
    spec = sts["spec"]
    replicas = spec.get("replicas", 1)
    service_name = spec["serviceName"]
    labels = spec["template"]["metadata"]["labels"]
    container = dida_container(sts, "storage")
    check(selects(spec["selector"], labels), f"StatefulSet {name}: its selector does not select its own pods")
    check(spec.get("podManagementPolicy") == "Parallel",
          f"StatefulSet {name}: podManagementPolicy must be Parallel (a node is ready only once it reached its peers)")
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in container.get("volumeMounts", []) or []}

    pods = []
    for ordinal in range(replicas):
        pod_name = f"{name}-{ordinal}"
        pod = {"metadata.name": pod_name, "metadata.namespace": namespace, "status.podIP": f"10.0.0.{ordinal + 10}"}
        flags = flags_of(container, pod, "storage")
        pods.append((ordinal, pod_name, flags))

    print(f"StatefulSet {namespace}/{name}: {replicas} replicas, headless Service {service_name}")
    advertised: dict[str, str] = {}
    for ordinal, pod_name, flags in pods:
        who = f"storage pod {pod_name}"
        node = flags.get("id")
        check(node == pod_name, f"{who}: --id is {node!r}, expected the pod name {pod_name!r}")
        url = flags.get("url", "")
        check_service_route(objects, who, url, f"{pod_name}.{service_name}.{namespace}.svc.cluster.local",
                            service_name, namespace, labels, container, flags.get("listen"), headless=True)
        advertised[pod_name] = url
        data_dir = flags.get("data-dir")
        mount = None
        if check(data_dir is not None, f"{who}: no --data-dir"):
            path = data_dir.rstrip("/")
            mount = max((m for m in mounts if path == m or path.startswith(m + "/")), key=len, default=None)
            check(mount is not None and mounts[mount] in claims,
                  f"{who}: --data-dir {data_dir} is not on the mount of a volumeClaimTemplate ({sorted(claims)})")
        claim = f"{mounts[mount]}-{pod_name}" if mount else "?"
        check_probes(who, container, flags)
        check_tls(who, sts, container)
        print(f"  ordinal {ordinal}: id {node}, url {url}, data {data_dir} on claim {claim}")

    for ordinal, pod_name, flags in pods:
        who = f"storage pod {pod_name}"
        peers = parse_members(flags.get("peers", ""))
        check(len(peers) == replicas, f"{who}: --peers lists {len(peers)} nodes, the StatefulSet has {replicas} replicas")
        check(set(peers) == set(advertised),
              f"{who}: --peers names {sorted(peers)}, the pods are {sorted(advertised)}")
        for node, url in peers.items():
            if node in advertised:
                check(url == advertised[node], f"{who}: --peers gives {node} as {url}, but {node} advertises {advertised[node]}")
    check(len({flags.get("peers") for _, _, flags in pods}) == 1, "storage pods were given different --peers lists")

    budgets = [
        obj for obj in objects
        if obj.get("kind") == "PodDisruptionBudget" and namespace_of(obj) == namespace
        and selects(obj["spec"].get("selector"), labels)
    ]
    if check(len(budgets) == 1, f"expected one PodDisruptionBudget selecting the storage pods, found {len(budgets)}"):
        budget = budgets[0]["spec"]
        check(budget.get("maxUnavailable") == 1,
              f"PodDisruptionBudget {budgets[0]['metadata']['name']}: maxUnavailable is {budget.get('maxUnavailable')}, expected 1")
        print(f"  PodDisruptionBudget {budgets[0]['metadata']['name']}: selects these pods, maxUnavailable 1")
    return advertised


def check_scheduler(objects: list[dict], storage: dict[str, str]) -> str:
    deploy = workload(objects, "scheduler")
    name, namespace = deploy["metadata"]["name"], namespace_of(deploy)
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    container = dida_container(deploy, "scheduler")
    pod_name = f"{name}-5d8f7c9b4-x2x7k"
    flags = flags_of(container, {"metadata.name": pod_name, "metadata.namespace": namespace, "status.podIP": "10.0.1.10"}, "scheduler")
    who = f"scheduler pod {pod_name}"
    check(deploy["spec"].get("replicas", 1) == 1, f"{who}: the scheduler must run as one replica")
    url = flags.get("url", "")
    host = urlsplit(url).hostname or ""
    service_name = host.split(".")[0]
    check(host == f"{service_name}.{namespace}.svc.cluster.local",
          f"{who}: --url host {host} is not a Service of namespace {namespace}")
    check_service_route(objects, who, url, host, service_name, namespace, labels, container, flags.get("listen"), headless=False)
    check(parse_members(flags.get("storage", "")) == storage, f"{who}: --storage differs from the storage nodes' --peers")
    check_probes(who, container, flags)
    check_tls(who, deploy, container)
    http = flags.get("http-listen")
    if check(http is not None, f"{who}: no --http-listen, so no gateway"):
        service = find(objects, "Service", service_name, namespace)
        check(service is not None and any(p["port"] == port_of(http) for p in service["spec"]["ports"]),
              f"{who}: the gateway port {port_of(http)} is not a port of Service {service_name}")
    print(f"Scheduler {namespace}/{name}: id {flags.get('id')}, url {url}, gateway {http}")
    return url


def check_worker(objects: list[dict], storage: dict[str, str], scheduler_url: str) -> None:
    obj = workload(objects, "worker")
    name, namespace, kind = obj["metadata"]["name"], namespace_of(obj), obj["kind"]
    spec = obj["spec"]
    pod_spec = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    container = dida_container(obj, "worker")
    # A Deployment's pods are named <deployment>-<template hash>-<5 characters> and
    # get the DNS name <pod>.<spec.subdomain>; a StatefulSet's <name>-<ordinal> and
    # <pod>.<serviceName>.
    if kind == "Deployment":
        pod_names = [f"{name}-5d8f7c9b4-x2x7k", f"{name}-5d8f7c9b4-q8w4m"]
        subdomain = pod_spec.get("subdomain")
    else:
        pod_names = [f"{name}-{i}" for i in range(spec.get("replicas", 1))]
        subdomain = spec.get("serviceName")
    if not check(subdomain is not None, f"worker {kind} {name}: no subdomain / serviceName, so its pods have no DNS name"):
        return
    ids = set()
    for pod_name in pod_names:
        who = f"worker pod {pod_name}"
        check(len(pod_name) <= 63, f"{who}: a pod name over 63 characters is not its host name, so its DNS name differs")
        flags = flags_of(container, {"metadata.name": pod_name, "metadata.namespace": namespace, "status.podIP": "10.0.2.10"}, "worker")
        check(flags.get("id") == pod_name, f"{who}: --id is {flags.get('id')!r}, expected the pod name")
        ids.add(flags.get("id"))
        url = flags.get("url", "")
        check_service_route(objects, who, url, f"{pod_name}.{subdomain}.{namespace}.svc.cluster.local",
                            subdomain, namespace, labels, container, flags.get("listen"), headless=True)
        check(flags.get("scheduler") == scheduler_url,
              f"{who}: --scheduler is {flags.get('scheduler')}, the scheduler advertises {scheduler_url}")
        check(parse_members(flags.get("storage", "")) == storage, f"{who}: --storage differs from the storage nodes' --peers")
        check_probes(who, container, flags)
        check_tls(who, obj, container)
        drain = int(flags.get("drain-timeout", "300"))
        grace = pod_spec.get("terminationGracePeriodSeconds", 30)
        check(grace > drain, f"{who}: terminationGracePeriodSeconds {grace} does not exceed --drain-timeout {drain}")
        print(f"Worker {kind} {namespace}/{name}: pod {pod_name} -> id {flags.get('id')}, url {url}")
    check(len(ids) == len(pod_names), "two worker pods would register under the same id")
    autoscalers = [
        o for o in objects
        if o.get("kind") == "HorizontalPodAutoscaler" and namespace_of(o) == namespace
        and o["spec"]["scaleTargetRef"].get("kind") == kind and o["spec"]["scaleTargetRef"].get("name") == name
    ]
    check(len(autoscalers) == 1, f"expected one HorizontalPodAutoscaler scaling {kind} {name}, found {len(autoscalers)}")


def report() -> int:
    if FAILURES:
        print("the pods' identities do not match the cluster's configuration (FAIL lines above)")
    else:
        print("every pod's id, URL, peers and data directory match")
    print(f"ordinals: {PASSED} passed, {len(FAILURES)} failed")
    return 1 if FAILURES else 0


def main() -> int:
    if len(sys.argv) > 2:
        print(__doc__)
        return 2
    if len(sys.argv) == 2 and sys.argv[1] != "-":
        with open(sys.argv[1], encoding="utf-8") as stream:
            objects = load(stream)
    else:
        objects = load(sys.stdin)
    storage = check_storage(objects)
    scheduler_url = check_scheduler(objects, storage)
    check_worker(objects, storage, scheduler_url)
    return report()


if __name__ == "__main__":
    sys.exit(main())
