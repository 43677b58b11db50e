#!/usr/bin/env bash
# Generates, for tests only, the certificates of the TLS tests into DIR (created if missing;
# files there are overwritten, so running it again is harmless):
#   ca.pem/ca.key                a test certificate authority
#   server.pem/server.key        a server certificate signed by it, for 127.0.0.1, ::1 and localhost
#   client.pem/client.key        a client certificate signed by it (mutual TLS)
#   other-ca.pem/other-ca.key    a second, unrelated CA (a client trusting only it must fail)
# EC P-256 keys, valid for 2 days. Needs openssl; fails loudly (exit 1) without it.
#   usage: scripts/tls.sh DIR
set -euo pipefail

dir=${1:?usage: scripts/tls.sh DIR}
command -v openssl >/dev/null || { echo "[tls] FATAL: openssl is not installed" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"

key() { openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$1"; }

ca() { # ca NAME SUBJECT
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days 2 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem" 2>/dev/null
}

leaf() { # leaf NAME SUBJECT EXTENSIONS
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 2 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca "pubsub test CA"
ca other-ca "pubsub unrelated test CA"
leaf server localhost "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"
leaf client pubsub-test-client "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 600 ./*.key
openssl verify -CAfile ca.pem server.pem client.pem >/dev/null
