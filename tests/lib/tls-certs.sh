#!/bin/sh
# tls-certs.sh DIR: test certificates for tls = x509, made with certtool
# (gnutls-bin): two CAs, A and B, and a peer certificate signed by each,
#   DIR/ca-a.pem  DIR/peer-a.pem  DIR/peer-a.key
#   DIR/ca-b.pem  DIR/peer-b.pem  DIR/peer-b.key
# Peer certificates carry both TLS purposes: a daemon connects and accepts.
# ECDSA P-256 keys: quick to make, quick to handshake with.
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"

printf '%s\n' 'cn = "postcopyd test CA"' ca cert_signing_key \
    'expiration_days = 2' >ca.tmpl
printf '%s\n' 'cn = "postcopyd test peer"' tls_www_server tls_www_client \
    signing_key 'expiration_days = 2' >peer.tmpl
for n in a b; do
    certtool --generate-privkey --key-type=ecdsa --outfile ca-$n.key 2>/dev/null
    certtool --generate-self-signed --load-privkey ca-$n.key \
        --template ca.tmpl --outfile ca-$n.pem 2>/dev/null
    certtool --generate-privkey --key-type=ecdsa --outfile peer-$n.key 2>/dev/null
    certtool --generate-certificate --load-privkey peer-$n.key \
        --load-ca-certificate ca-$n.pem --load-ca-privkey ca-$n.key \
        --template peer.tmpl --outfile peer-$n.pem 2>/dev/null
done
chmod 600 ./*.key
rm -f ca.tmpl peer.tmpl
