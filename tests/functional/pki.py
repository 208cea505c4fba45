#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""Test certificates, made at test time: a CA, a server and a client.

The server certificate is valid for localhost and, unless told
otherwise, 127.0.0.1; it serves the cluster routes too (server and client
auth). Nothing is downloaded and no key leaves the test's temp dir.
"""

import datetime
import ipaddress
import os

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path, key):
    with open(path, 'wb') as out:
        out.write(key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    os.chmod(path, 0o600)


def _write_cert(path, cert):
    with open(path, 'wb') as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))


def _issue(subject, key, issuer, issuer_key, ca=False, usages=(),
           names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject))
               .issuer_name(_name(issuer))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                              critical=True))
    if usages:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(usages)), critical=False)
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(names)), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                          crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False,
                          key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory, dns_names=('localhost',),
             ip_addresses=('127.0.0.1',)):
    """Write ca.pem, server.pem/-key.pem and client.pem/-key.pem there.

    The server certificate names ``dns_names`` and ``ip_addresses``
    (``ip_addresses=()``: host names only, as a production certificate
    whose clients must be told names, not addresses). Returns a dict of
    those paths by name (ca, server_cert, server_key, client_cert,
    client_key).
    """
    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(directory, file) for name, file in (
        ('ca', 'ca.pem'), ('server_cert', 'server.pem'),
        ('server_key', 'server-key.pem'), ('client_cert', 'client.pem'),
        ('client_key', 'client-key.pem'))}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue('df-nats test CA', ca_key, 'df-nats test CA', ca_key,
                ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        'df-nats test server', server_key, 'df-nats test CA', ca_key,
        usages=(ExtendedKeyUsageOID.SERVER_AUTH,
                ExtendedKeyUsageOID.CLIENT_AUTH),
        names=[x509.DNSName(name) for name in dns_names]
        + [x509.IPAddress(ipaddress.ip_address(address))
           for address in ip_addresses])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue('df-nats test client', client_key, 'df-nats test CA',
                    ca_key, usages=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    _write_cert(paths['ca'], ca)
    _write_cert(paths['server_cert'], server)
    _write_key(paths['server_key'], server_key)
    _write_cert(paths['client_cert'], client)
    _write_key(paths['client_key'], client_key)
    return paths
