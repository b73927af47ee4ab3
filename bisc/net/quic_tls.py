"""TLS material for the QUIC transport: a self-signed certificate of the
node's Ed25519 key, the aioquic configurations, and reading the peer's key.

Chain validation is off (every certificate is self-signed); what authenticates
the server is that its certificate key equals the EndpointId the client dialed
and that aioquic verified the TLS CertificateVerify signature with that key.
aioquic 1.x calls `_check_certificate_verify_signature` (the peer's
certificate key over the transcript) in `_client_handle_certificate_verify`
*before* and independently of `verify_mode`; CERT_NONE only skips
`verify_certificate` (dates, name, chain). A server without the private key
therefore cannot finish the handshake.
"""

from __future__ import annotations

import datetime
import ssl

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from bisc.identity import EndpointId, Identity
from bisc.net.transport import ALPN

CID_LENGTH = 8  # aioquic's default; the demultiplexer parses short headers with it
MAX_DATAGRAM_FRAME_SIZE = 65536
CERT_BACKDATE = datetime.timedelta(days=1)  # tolerate clocks that are a little behind
CERT_LIFETIME = datetime.timedelta(days=3650)


def self_signed_certificate(identity: Identity, now: datetime.datetime | None = None) -> x509.Certificate:
    """A certificate of `identity`'s key, signed by itself (Ed25519 takes no hash)."""
    now = now or datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(identity.endpoint_id))])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(identity.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CERT_BACKDATE)
        .not_valid_after(now + CERT_LIFETIME)
        .sign(identity.private_key, None)
    )


def certificate_endpoint_id(certificate: x509.Certificate) -> EndpointId | None:
    """The EndpointId a certificate speaks for, or None if its key is not Ed25519."""
    try:
        key = certificate.public_key()
    except ValueError:
        return None
    if not isinstance(key, Ed25519PublicKey):
        return None
    return EndpointId(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def peer_endpoint_id(quic: QuicConnection) -> EndpointId | None:
    """The key of the certificate the peer presented in this TLS handshake.

    Only meaningful on the client after HandshakeCompleted; aioquic keeps the
    parsed certificate on its TLS context.
    """
    tls = getattr(quic, "tls", None)
    certificate = getattr(tls, "_peer_certificate", None)
    if not isinstance(certificate, x509.Certificate):
        return None
    return certificate_endpoint_id(certificate)


def _base_configuration(is_client: bool, idle_timeout: float) -> QuicConfiguration:
    return QuicConfiguration(
        alpn_protocols=[ALPN],
        is_client=is_client,
        idle_timeout=idle_timeout,
        connection_id_length=CID_LENGTH,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
    )


def client_configuration(idle_timeout: float) -> QuicConfiguration:
    config = _base_configuration(True, idle_timeout)
    # Self-signed: no chain to validate. The key is checked against the dialed
    # EndpointId after the handshake; CertificateVerify is still checked by aioquic.
    config.verify_mode = ssl.CERT_NONE
    return config


def server_configuration(identity: Identity, idle_timeout: float) -> QuicConfiguration:
    config = _base_configuration(False, idle_timeout)
    config.certificate = self_signed_certificate(identity)
    config.private_key = identity.private_key
    return config
