#!/bin/sh
# tls-certs.sh DIR [NAME...]: test certificates for tls = x509, made with
# certtool (gnutls-bin): two CAs, A and B, and a peer certificate signed by
# each,
#   DIR/ca-a.pem  DIR/peer-a.pem  DIR/peer-a.key
#   DIR/ca-b.pem  DIR/peer-b.pem  DIR/peer-b.key
# and one more from CA A that names a host no test uses,
#   DIR/peer-wrong.pem  DIR/peer-wrong.key  (DNS wrong.invalid only)
# Peers check each other's name (subjectAltName): peer-a and peer-b name
# 127.0.0.1, ::1, localhost and every NAME given (IP addresses or DNS
# names, e.g. the test namespaces' addresses).
# Peer certificates carry both TLS purposes: a daemon connects and accepts.
# ECDSA P-256 keys: quick to make, quick to handshake with.
set -eu
dir=$1
shift
mkdir -p "$dir"
cd "$dir"

# san NAME...: the template lines naming each NAME.
san() {
    for n in "$@"; do
        case $n in
        *[!0-9.:a-fA-F]* | '') echo "dns_name = \"$n\"" ;;
        *) echo "ip_address = \"$n\"" ;;
        esac
    done
}

printf '%s\n' 'cn = "postcopyd test CA"' ca cert_signing_key \
    'expiration_days = 2' >ca.tmpl
{
    printf '%s\n' 'cn = "postcopyd test peer"' tls_www_server tls_www_client \
        signing_key 'expiration_days = 2'
    san 127.0.0.1 ::1 localhost "$@"
} >peer.tmpl
printf '%s\n' 'cn = "wrong.invalid"' 'dns_name = "wrong.invalid"' \
    tls_www_server tls_www_client signing_key 'expiration_days = 2' >wrong.tmpl
# cert KEYNAME CA TEMPLATE: KEYNAME.key and KEYNAME.pem signed by ca-CA.
cert() {
    certtool --generate-privkey --key-type=ecdsa --outfile "$1.key" 2>/dev/null
    certtool --generate-certificate --load-privkey "$1.key" \
        --load-ca-certificate "ca-$2.pem" --load-ca-privkey "ca-$2.key" \
        --template "$3" --outfile "$1.pem" 2>/dev/null
}
for n in a b; do
    certtool --generate-privkey --key-type=ecdsa --outfile ca-$n.key 2>/dev/null
    certtool --generate-self-signed --load-privkey ca-$n.key \
        --template ca.tmpl --outfile ca-$n.pem 2>/dev/null
    cert peer-$n $n peer.tmpl
done
cert peer-wrong a wrong.tmpl
chmod 600 ./*.key
rm -f ca.tmpl peer.tmpl wrong.tmpl
