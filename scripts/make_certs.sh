#!/usr/bin/env bash
# A development CA, one certificate the three services share (server and client: mTLS between them)
# and a tokens file, for SEMCOM_TLS_CERT_FILE / SEMCOM_TLS_KEY_FILE / SEMCOM_TLS_CA_FILE and
# SEMCOM_AUTH_TOKENS_FILE (shared/serving/security.py). Not for production: the CA key lies beside it.
#
#   scripts/make_certs.sh DIR [EXTRA_NAME ...]
#
# DIR/ca.pem, DIR/ca.key: the CA (10 years); DIR/service.pem, DIR/service.key: valid for localhost,
# 127.0.0.1, ::1, the compose and Kubernetes service names and any EXTRA_NAME (DNS names);
# DIR/tokens.txt: a random token for the services' identity (@service) and one for user "demo".
set -euo pipefail
dir=${1:?usage: scripts/make_certs.sh DIR [EXTRA_NAME ...]}
shift
mkdir -p "$dir"
cd "$dir"
names="DNS:localhost,IP:127.0.0.1,IP:::1,DNS:transmitter,DNS:channel_emulator,DNS:channel-emulator,DNS:receiver"
for name in "$@"; do names="$names,DNS:$name"; done
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=semcom dev CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=semcom service" -keyout service.key -out service.csr 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$names" > service.ext
openssl x509 -req -in service.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
  -extfile service.ext -out service.pem 2>/dev/null
rm -f service.csr service.ext ca.srl
chmod 600 ca.key service.key
printf '# <token> <identity>: @service is the services'"'"' own, any other identity a user_id\n%s @service\n%s demo\n' \
  "$(openssl rand -hex 24)" "$(openssl rand -hex 24)" > tokens.txt
chmod 600 tokens.txt
echo "wrote $dir/{ca.pem,ca.key,service.pem,service.key,tokens.txt}"
