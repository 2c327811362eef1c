#!/bin/sh
# Generates the secrets deploy/docker-compose.yml reads, one file each, into deploy/secrets/ (or $1).
# Existing files are kept (re-running never replaces a key-encryption key: replacing it would make the
# sealed signing keys and personal data in Redis unreadable). Needs only sh, head, od, base64 and tr.
#
#   sh deploy/gen-secrets.sh            # then: docker compose -f deploy/docker-compose.yml up -d
#
# The directory is mode 0700; the files are 0644 so that the containers' non-root users (broker 10001,
# redis 999) can read their bind-mounted copies. Nothing here is ever committed (secrets/.gitignore).
set -eu

dir=${1:-"$(dirname "$0")/secrets"}
umask 077
mkdir -p "$dir"
chmod 0700 "$dir"

random_bytes() { head -c "$1" /dev/urandom; }
# URL-safe forms only: the Redis password goes into the store URL, client secrets into Basic auth.
hex() { random_bytes "$1" | od -An -v -tx1 | tr -d ' \n'; }
base64url() { random_bytes "$1" | base64 | tr -d '\n=' | tr '+/' '-_'; }

put() {
  file="$dir/$1"
  if [ -s "$file" ]; then
    echo "kept      $file"
  else
    printf '%s' "$2" > "$file"
    echo "generated $file"
  fi
  chmod 0644 "$file"
}

put broker_kek "$(base64url 32)"                       # 32 bytes, base64url: secrets.keyEncryptionKey
put redis_password "$(hex 32)"                         # the Redis ACL user `broker`
put integration_service_client_secret "$(base64url 32)"
put fhir_gateway_client_secret "$(base64url 32)"
