#!/bin/sh
# make-certs.sh DIR: throw-away certificates for mqtt-relay's tests and demo (never for a real
# system). Writes into DIR (created if missing):
#
#   ca.pem        ca.key          the test CA (self-signed, 10 years)
#   server.pem    server.key      server certificate for localhost and 127.0.0.1 (SAN DNS + IP),
#                                 signed by ca.pem; server-chain.pem = server.pem + ca.pem
#   client.pem    client.key      client certificate (CN "mqtt-relay-client", clientAuth),
#                                 signed by ca.pem, for mTLS
#   other-ca.pem  other-ca.key    a second CA with no relation to ca.pem (the wrong-CA tests)
#   other-client.pem/.key         a client certificate signed by other-ca.pem
#   expired.pem   expired.key     a server certificate for localhost/127.0.0.1 signed by ca.pem
#                                 that expired on 2020-01-02
#
# Keys are unencrypted EC P-256 (fast to make, accepted by OpenSSL 1.1.1 and 3.x), mode 0600.
# Requires openssl (1.1.1 or 3.x). Runs in about a second; safe to run again (overwrites).
set -eu

if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    echo "usage: $0 DIR   (makes a throw-away CA, server, client and negative-test certificates)" >&2
    exit 2
fi
command -v openssl >/dev/null 2>&1 || { echo "$0: openssl is not installed" >&2; exit 1; }

DIR=$1
mkdir -p "$DIR"
cd "$DIR"
umask 077
WORK=$(mktemp -d "${TMPDIR:-/tmp}/make-certs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

key() { # key FILE: a new EC P-256 private key
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
    chmod 600 "$1"
}

ca() { # ca NAME CN: a self-signed CA
    key "$1.key"
    openssl req -new -x509 -key "$1.key" -out "$1.pem" -days 3650 -sha256 \
        -subj "/O=mqtt-relay test/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
}

# extension sections for the leaf certificates
cat >"$WORK/ext.cnf" <<'EOF'
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

leaf() { # leaf NAME CN CA SECTION: a certificate signed by CA, valid 825 days
    key "$1.key"
    openssl req -new -key "$1.key" -out "$WORK/$1.csr" -subj "/O=mqtt-relay test/CN=$2" 2>/dev/null
    openssl x509 -req -in "$WORK/$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial \
        -CAserial "$WORK/$3.srl" -out "$1.pem" -days 825 -sha256 \
        -extfile "$WORK/ext.cnf" -extensions "$4" 2>/dev/null
}

ca ca "mqtt-relay test CA"
ca other-ca "unrelated test CA"
leaf server localhost ca server
cat server.pem ca.pem >server-chain.pem
leaf client mqtt-relay-client ca client
leaf other-client mqtt-relay-client other-ca client

# The expired certificate: `openssl x509` cannot back-date, `openssl ca` can (-startdate/-enddate).
key expired.key
openssl req -new -key expired.key -out "$WORK/expired.csr" -subj "/O=mqtt-relay test/CN=localhost" \
    2>/dev/null
mkdir -p "$WORK/db"
: >"$WORK/db/index.txt"
echo 1000 >"$WORK/db/serial"
cat >"$WORK/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
dir = $WORK/db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
organizationName = optional
commonName = supplied
EOF
openssl ca -batch -config "$WORK/ca.cnf" -cert ca.pem -keyfile ca.key -in "$WORK/expired.csr" \
    -out expired.pem -notext -startdate 20200101000000Z -enddate 20200102000000Z \
    -extfile "$WORK/ext.cnf" -extensions server 2>/dev/null

chmod 644 ./*.pem
echo "certificates in $(pwd): ca.pem server.pem client.pem other-ca.pem other-client.pem expired.pem (+ .key)"
