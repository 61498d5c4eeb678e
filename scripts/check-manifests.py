#!/usr/bin/env python3
"""Cross-object checks of a `helm template` render of helm/parloir, the things a
per-object schema cannot see. Used by scripts/lint-deploy (needs PyYAML, which
kubernetes-validate brings into the venv).

  check-manifests.py RENDER.yaml
      fail (exit 1, one line per problem) when the render breaks a rule below
  check-manifests.py --split-crds GROUP[,GROUP] RENDER.yaml OUT.yaml
      write to OUT.yaml the documents whose apiVersion group is not a listed CRD
      group (what kubernetes-validate has schemas for)
"""
import sys

import yaml


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def group_of(doc):
    api = doc.get("apiVersion", "")
    return api.split("/")[0] if "/" in api else ""


def split_crds(groups, src, dst):
    groups = set(groups.split(","))
    docs = [d for d in load(src) if group_of(d) not in groups]
    with open(dst, "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check(path):
    docs = load(path)
    problems = []

    def bad(msg):
        problems.append(msg)

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    one = lambda kind: (by_kind.get(kind) or [None])[0]  # noqa: E731

    deploy, svc, cm = one("Deployment"), one("Service"), one("ConfigMap")
    if not (deploy and svc and cm):
        bad("the render needs a Deployment, a Service and a ConfigMap")
        return problems

    pod = deploy["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "parloir"]
    port_names = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    env = {e["name"]: e for e in container.get("env", [])}
    config = cm.get("data", {})

    # Selectors and ports.
    if not matches(deploy["spec"]["selector"]["matchLabels"], pod_labels):
        bad("Deployment selector does not match its pod labels")
    if not matches(svc["spec"]["selector"], pod_labels):
        bad("Service selector does not match the pod labels")
    for p in svc["spec"]["ports"]:
        if isinstance(p["targetPort"], str) and p["targetPort"] not in port_names:
            bad(f"Service targetPort {p['targetPort']!r} is not a container port name")
    bind_port = int(config.get("PARLOIR_BIND", ":0").rsplit(":", 1)[1])
    if bind_port not in port_names.values():
        bad(f"PARLOIR_BIND port {bind_port} is not the containerPort")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", None)):
        p = container.get(probe)
        if not p:
            bad(f"no {probe}")
            continue
        if path and p["httpGet"]["path"] != path:
            bad(f"{probe} should GET {path}")
        if p["httpGet"]["port"] not in port_names and p["httpGet"]["port"] not in port_names.values():
            bad(f"{probe} port is not a container port")

    # Pod-level settings the node relies on.
    node_id = env.get("PARLOIR_NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if node_id != "metadata.name":
        bad("PARLOIR_NODE_ID must come from the pod name (fieldRef metadata.name)")
    if config.get("PARLOIR_MIGRATE_ON_START") == "false" and not any(
        "pre-upgrade" in (j["metadata"].get("annotations") or {}).get("helm.sh/hook", "") for j in by_kind.get("Job", [])
    ):
        bad("PARLOIR_MIGRATE_ON_START=false without a pre-upgrade migration Job")
    for key in ("DATABASE_URL", "JWT_SECRET", "REDIS_URL"):
        if key in config:
            bad(f"{key} is a secret but sits in the ConfigMap")
    if spec.get("enableServiceLinks") is not False:
        bad("enableServiceLinks should be false (Service env vars would land among PARLOIR_*)")

    # Security.
    psc, csc = spec.get("securityContext", {}), container.get("securityContext", {})
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        bad("runAsNonRoot is not set")
    if not csc.get("readOnlyRootFilesystem"):
        bad("readOnlyRootFilesystem is not set")
    if "ALL" not in csc.get("capabilities", {}).get("drop", []):
        bad("capabilities are not dropped (drop: [ALL])")
    if (psc.get("seccompProfile") or csc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        bad("seccompProfile is not RuntimeDefault")

    # Shutdown: preStop wait + drain must fit in the grace period.
    pre = container.get("lifecycle", {}).get("preStop", {})
    pre_secs = pre.get("sleep", {}).get("seconds", 0)
    drain = int(config.get("PARLOIR_DRAIN_GRACE_SECS", "10"))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= pre_secs + drain:
        bad(f"terminationGracePeriodSeconds {grace} <= preStop {pre_secs} + drain {drain}")

    # Roll pods on config changes.
    ann = pod["metadata"].get("annotations") or {}
    for a in ("checksum/config", "checksum/secret"):
        if a not in ann:
            bad(f"pod template lacks the {a} annotation")

    # Autoscaling and disruption budget.
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) != ("Deployment", deploy["metadata"]["name"]):
            bad("HPA does not target the Deployment")
        if "replicas" in deploy["spec"]:
            bad("Deployment sets replicas while an HPA owns them (every upgrade would reset the scale)")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not matches(pdb["spec"]["selector"]["matchLabels"], pod_labels):
            bad("PodDisruptionBudget selector does not match the pods")

    # Ingress: backend and stickiness.
    svc_ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    for ing in by_kind.get("Ingress", []):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                b = p["backend"]["service"]
                if b["name"] != svc["metadata"]["name"] or (
                    b["port"].get("name") not in svc_ports and b["port"].get("number") not in svc_ports.values()
                ):
                    bad(f"Ingress backend {b} is not the Service's port")
        ia = ing["metadata"].get("annotations") or {}
        if ing["spec"].get("ingressClassName") == "nginx" and ia.get("nginx.ingress.kubernetes.io/affinity") != "cookie":
            print("note: nginx Ingress without cookie affinity (Socket.IO long-polling needs it)")
        for t in ing["spec"].get("tls", []):
            hosts = {r["host"] for r in ing["spec"]["rules"]}
            if not set(t["hosts"]) <= hosts:
                bad(f"TLS hosts {t['hosts']} are not Ingress rule hosts")

    # ServiceMonitor (a CRD: kubernetes-validate has no schema for it).
    for sm in by_kind.get("ServiceMonitor", []):
        if sm.get("apiVersion") != "monitoring.coreos.com/v1":
            bad("ServiceMonitor apiVersion should be monitoring.coreos.com/v1")
        s = sm.get("spec", {})
        if not matches(s.get("selector", {}).get("matchLabels"), svc["metadata"]["labels"]):
            bad("ServiceMonitor selector does not match the Service labels")
        eps = s.get("endpoints") or []
        if not eps:
            bad("ServiceMonitor has no endpoints")
        for ep in eps:
            allowed = {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels", "relabelings", "metricRelabelings"}
            if set(ep) - allowed:
                bad(f"ServiceMonitor endpoint has unexpected fields {sorted(set(ep) - allowed)}")
            if ep.get("port") not in svc_ports:
                bad(f"ServiceMonitor endpoint port {ep.get('port')!r} is not a Service port name")

    # Hooks: a pre-install hook runs before the release's own objects exist, so
    # whatever the migration Job references must be pre-existing or a hook of a
    # lower weight.
    def hook(d):
        a = d["metadata"].get("annotations") or {}
        return a.get("helm.sh/hook"), int(a.get("helm.sh/hook-weight", "0"))

    rendered = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for job in by_kind.get("Job", []):
        events, weight = hook(job)
        if not events or "pre-install" not in events:
            continue
        jspec = job["spec"]["template"]["spec"]
        refs = []
        for c in jspec["containers"]:
            if c.get("args") != ["migrate"]:
                bad("the migration Job should run `parloir migrate` (args: [migrate])")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.append(("Secret", ref["name"]))
                ref = e.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    refs.append(("ConfigMap", ref["name"]))
            for ef in c.get("envFrom", []):
                for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                    if key in ef:
                        refs.append((kind, ef[key]["name"]))
        if jspec.get("serviceAccountName"):
            refs.append(("ServiceAccount", jspec["serviceAccountName"]))
        if "DATABASE_URL" not in {e["name"] for c in jspec["containers"] for e in c.get("env", [])}:
            bad("the migration Job has no DATABASE_URL")
        for ref in refs:
            target = rendered.get(ref)
            if target is None:
                continue  # pre-existing (existingSecret, a given ServiceAccount)
            t_events, t_weight = hook(target)
            if not t_events or "pre-install" not in t_events or t_weight >= weight:
                bad(f"migration Job uses {ref[0]} {ref[1]}, which does not exist yet when pre-install hooks run")
        pod_l = job["spec"]["template"]["metadata"].get("labels", {})
        if matches(svc["spec"]["selector"], pod_l):
            bad("migration pods match the Service selector")

    return problems


def main(argv):
    if len(argv) == 5 and argv[1] == "--split-crds":
        split_crds(argv[2], argv[3], argv[4])
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(argv[1])
    for p in problems:
        print(f"{argv[1]}: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
