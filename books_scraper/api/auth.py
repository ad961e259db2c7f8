"""The API's auth primitives: password hashes, JWTs and the configured users (no Datasette import).
The login and refresh views that use them are in login.py.

Password hashes are `pbkdf2_sha256$<iterations>$<salt>$<hash>` (base64); make one with
`python -m books_scraper.api.auth` and put it in the environment, never in the repository.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import secrets
import shlex
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import jwt
import yaml

from books_scraper.api.config import User, usable_secret

ALGORITHM = "HS256"
ISSUER = "books-api"
PBKDF2_ITERATIONS = 600_000
METADATA = Path(__file__).resolve().parents[2] / "metadata.yml"


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join(
        ["pbkdf2_sha256", str(iterations), base64.b64encode(salt).decode(), base64.b64encode(digest).decode()]
    )


def verify_password(password: str, encoded: str | None) -> bool:
    """Constant-time check; False for a malformed or missing hash."""
    try:
        scheme, iterations, salt, expected = (encoded or "").split("$")
        if scheme != "pbkdf2_sha256":
            return False
        digest = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), base64.b64decode(salt), int(iterations)
        )
        return hmac.compare_digest(digest, base64.b64decode(expected))
    except (ValueError, TypeError):
        return False


def configured_user(users: Iterable[User], username: Any) -> User | None:
    """The configured user of this name who can log in: a user whose hash is unset cannot."""
    return next((user for user in users if user.password_hash and user.username == username), None)


def find_user(users: Iterable[User], username: str, password: str) -> User | None:
    """The configured user with this name and password, checking a hash even for unknown names."""
    match = configured_user(users, username)
    if match is None:
        # Spend the same time as a real check so unknown names cannot be told apart.
        decoy = next((user for user in users if user.password_hash), None)
        if decoy is not None:
            verify_password(password, decoy.password_hash)
        return None
    return match if verify_password(password, match.password_hash) else None


def issue_token(
    secret: str, *, subject: str, roles: Iterable[str], kind: str, ttl: int, now: float | None = None
) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "roles": sorted(roles),
        "type": kind,
        "iat": issued,
        "exp": issued + ttl,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(secret: str | None, token: str, kind: str) -> dict | None:
    """The claims of a valid, unexpired token of this kind; None for anything wrong."""
    if not usable_secret(secret):
        return None
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "type"]},
        )
    except jwt.PyJWTError:
        return None
    return claims if claims.get("type") == kind else None


def token_actor(users: Iterable[User], claims: Mapping[str, Any]) -> dict | None:
    """The actor of a valid access token's claims, or None when the token is trusted past its subject:
    `sub` names no configured user, or `roles` is not a list of roles that user has today."""
    user = configured_user(users, claims.get("sub"))
    roles = claims.get("roles")
    if user is None or not isinstance(roles, list):
        return None
    if not all(isinstance(role, str) for role in roles) or not set(roles) <= user.roles:
        return None
    return {"id": user.username, "roles": sorted(roles), "auth": "jwt"}


def password_variables(metadata_path: Path) -> dict[str, str]:
    """username -> the environment variable metadata.yml reads that user's password hash from."""
    config = yaml.safe_load(metadata_path.read_text(encoding="utf-8"))
    users = (((config or {}).get("plugins") or {}).get("books-api") or {}).get("users") or []
    return {
        user["username"]: user["password_hash"]["$env"]
        for user in users
        if isinstance(user, dict) and isinstance(user.get("password_hash"), dict)
        and "$env" in user["password_hash"]
    }


def read_password(stdin: TextIO) -> str:
    """Twice at a terminal; the first line of standard input when it is piped."""
    if not stdin.isatty():
        password = stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            raise SystemExit("the passwords differ")
    if not password:
        raise SystemExit("the password is empty")
    return password


def main(argv: Sequence[str] | None = None, stdin: TextIO = sys.stdin) -> None:
    variables = password_variables(METADATA)
    parser = argparse.ArgumentParser(
        prog="python -m books_scraper.api.auth",
        description="Make the password hash of an API login user and print the line that gives it to "
        "the server's environment. The password is asked twice at a terminal, or read from the first "
        "line of standard input when piped (echo \"$PASSWORD\" | python -m books_scraper.api.auth).",
    )
    parser.add_argument(
        "--user", default="scientist", choices=sorted(variables),
        help="the user in metadata.yml whose hash to make (default: scientist)",
    )
    parser.add_argument(
        "--iterations", type=int, default=PBKDF2_ITERATIONS, help=argparse.SUPPRESS,  # tests only
    )
    args = parser.parse_args(argv)
    password = read_password(stdin)
    # Quoted: a hash has '$' in it, which a shell would expand.
    print(f"{variables[args.user]}={shlex.quote(hash_password(password, iterations=args.iterations))}")


if __name__ == "__main__":
    main()
