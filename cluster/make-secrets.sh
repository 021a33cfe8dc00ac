#!/usr/bin/env bash
# Makes the CA and the files of docker-compose.yml, ray-cluster.yaml and kuberay/'s Secrets:
#   ca/tls/ca.key, ca.crt      the private CA (a Solo data dir holding only it), OUTSIDE secrets/: no manifest
#                              mounts or copies cluster/ca; keep it offline, it can mint node, client and gateway
#                              certificates
#   secrets/node/              ca.crt, node.crt, node.key: the node certificate for [tls] hosts ([tls] node_dir);
#                              the only secret every node (head and workers) gets
#   secrets/tls/               ca.crt, server.crt, server.key: the gateway's certificate ([tls] dir), head only
#                              (docker-compose.yml, kuberay/; the launcher's head makes its own: ray-cluster.yaml)
#   secrets/metrics/token      the bearer token /metrics asks for ([gateway] metrics_token_file), head and
#                              Prometheus only
# Usage: cluster/make-secrets.sh [NAME-OR-IP ...]   names clients use to reach the gateway (besides head,
# localhost and solo-gateway, the compose and Kubernetes names). Run again with other names: the CA and the node
# certificate stay, the gateway's certificate is issued again. Needs `solo` installed (pip install .).
#
# Ownership: the containers run as the image's user solo, uid 1000, gid 1000, and Prometheus's as nobody with
# group 1000 added (docker-compose.yml, group_add). So the mounted files are made group 1000, private keys and
# the token 0640 and their folders 0750, never world-readable: a key readable by any local user (0644) is a key
# any process on the Docker machine may copy. This needs the script to run as uid 1000 (the usual first user),
# as a member of group 1000, or as root (it then chowns them to 1000:1000); otherwise it stops and says so.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
ca=ca
hosts=()
# 0.0.0.0 too, as `solo up --tls --host 0.0.0.0` would: the CLI on the head connects to the address in solo.json
for name in head solo-gateway 0.0.0.0 "$@"; do hosts+=(--host "$name"); done
if [ ! -f "$ca/tls/ca.key" ]; then
  solo certs init --data-dir "$ca" "${hosts[@]}"
else  # the CA stays; the gateway's certificate is issued again with these names
  python3 -c 'import sys, pathlib, solo.security.certs as c; c.issue_server(pathlib.Path(sys.argv[1]), sys.argv[2:])' \
    "$ca/tls" head solo-gateway 0.0.0.0 "$@"
fi
if [ ! -f secrets/node/node.key ]; then
  solo certs node cluster --data-dir "$ca" --host head --out secrets/node
fi
mkdir -p secrets/tls secrets/metrics
cp "$ca/tls/ca.crt" "$ca/tls/server.crt" "$ca/tls/server.key" secrets/tls/
[ -s secrets/metrics/token ] || python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > secrets/metrics/token
# secrets/ stays 0700 (umask): Docker bind-mounts the folders below it as root, nothing in a container walks it
chmod 750 secrets/tls secrets/node secrets/metrics
chmod 644 secrets/tls/ca.crt secrets/tls/server.crt secrets/node/ca.crt secrets/node/node.crt
chmod 640 secrets/tls/server.key secrets/node/node.key secrets/metrics/token
if [ "$(id -u)" = 0 ]; then
  chown -R 1000:1000 secrets/tls secrets/node secrets/metrics
elif ! chgrp -R 1000 secrets/tls secrets/node secrets/metrics 2>/dev/null; then
  echo "the containers (uid/gid 1000) cannot read secrets/: run this as uid 1000, in group 1000, or as root" \
       "(sudo chown -R 1000:1000 $(pwd)/secrets/tls $(pwd)/secrets/node $(pwd)/secrets/metrics)" >&2
  exit 1
fi
echo "wrote $(pwd)/secrets; the CA is in $(pwd)/ca: keep it private and off every node"
