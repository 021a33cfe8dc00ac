#!/usr/bin/env bash
# Makes cluster/secrets/ for docker-compose.yml and ray-cluster.yaml (and the files of kuberay/'s Secrets):
#   secrets/ca/tls/ca.key ...  the private CA (a Solo data dir holding only it): keep it, never mount it
#   secrets/tls/               ca.crt, server.crt, server.key: the gateway's certificate ([tls] dir)
#   secrets/node/              ca.crt, node.crt, node.key: the node certificate for [tls] hosts ([tls] node_dir)
#   secrets/metrics/token      the bearer token /metrics asks for ([gateway] metrics_token_file)
# Usage: cluster/make-secrets.sh [NAME-OR-IP ...]   names clients use to reach the gateway (besides head,
# localhost and solo-gateway, the compose and Kubernetes names). Needs `solo` installed (pip install .).
set -euo pipefail
cd "$(dirname "$0")"
umask 077
ca=secrets/ca
hosts=()
# 0.0.0.0 too, as `solo up --tls --host 0.0.0.0` would: the CLI on the head connects to the address in solo.json
for name in head solo-gateway 0.0.0.0 "$@"; do hosts+=(--host "$name"); done
if [ ! -f "$ca/tls/ca.key" ]; then
  solo certs init --data-dir "$ca" "${hosts[@]}"
fi
solo certs node cluster --data-dir "$ca" --host head --out secrets/node
mkdir -p secrets/tls secrets/metrics
cp "$ca/tls/ca.crt" "$ca/tls/server.crt" "$ca/tls/server.key" secrets/tls/
[ -s secrets/metrics/token ] || python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > secrets/metrics/token
# the containers run as uid 1000: let them read the mounted files (./secrets itself stays 0700)
chmod 755 secrets/tls secrets/node secrets/metrics
chmod 644 secrets/tls/* secrets/node/* secrets/metrics/token
echo "wrote $(pwd)/secrets; keep secrets/ca private"
