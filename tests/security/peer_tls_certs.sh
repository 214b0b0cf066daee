#!/bin/sh
# Make a test CA and one certificate per node name for peer TLS, with the
# openssl commands of docs/security.md. Everything is made fresh in DIR (the
# keys are test keys: never reuse them).
#   sh peer_tls_certs.sh DIR CA-NAME NODE...
# DIR/CA-NAME.pem, DIR/CA-NAME.key, and for each NODE DIR/NODE.pem and
# DIR/NODE.key (a certificate naming NODE by DNS subject alternative name
# and CN, signed by that CA, for both TLS server and client use).
set -eu
dir=$1
ca=$2
shift 2
mkdir -p "$dir"
cd "$dir"
if [ ! -f "$ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$ca.key" -out "$ca.pem" -days 2 -subj "/CN=$ca" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
for name in "$@"; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=DNS:$name" > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" \
        -CAcreateserial -days 2 -sha256 -extfile "$name.ext" \
        -out "$name.pem" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
done
