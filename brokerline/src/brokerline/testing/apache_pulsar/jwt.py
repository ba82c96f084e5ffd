"""HS256 JSON Web Tokens for an Apache Pulsar started with token authentication.

Pulsar's AuthenticationProviderToken checks the signature with the secret key and takes the
`sub` claim as the role; a token is three base64url parts, so the tests mint their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def secret_key() -> bytes:
    """A new HS256 key (256 bits: the least Pulsar's JWT library accepts for HS256)."""
    return secrets.token_bytes(32)


def token(key: bytes, subject: str) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": subject}).encode())
    signature = hmac.new(key, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(signature)}"


def token_auth_settings(key: bytes, superuser_token: str) -> dict[str, str | int]:
    """standalone.conf keys: token authentication on; the broker's own admin client (which
    creates public/default at start) signs in as the superuser `admin`."""
    return {
        "authenticationEnabled": "true",
        "authenticationProviders": (
            "org.apache.pulsar.broker.authentication.AuthenticationProviderToken"
        ),
        "tokenSecretKey": f"data:;base64,{base64.b64encode(key).decode()}",
        "superUserRoles": "admin",
        "brokerClientAuthenticationPlugin": (
            "org.apache.pulsar.client.impl.auth.AuthenticationToken"
        ),
        "brokerClientAuthenticationParameters": f"token:{superuser_token}",
    }
