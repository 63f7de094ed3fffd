"""Try every way to get a private key out of a SoftHSM2 token; print what happened as JSON.

Run in a child process (its own PKCS#11 login, independent of the signers of the test process):

    python tests/keys/hsm_probe.py MODULE TOKEN PIN LABEL
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass


def _attempt(action: Any) -> str:
    try:
        value = action()
    except pkcs11.PKCS11Error as exc:
        return f"refused: {type(exc).__name__}"
    return f"ALLOWED: {len(value) if isinstance(value, bytes) else value!r}"


def probe(module: str, token_label: str, pin: str, label: str) -> dict[str, Any]:
    token = pkcs11.lib(module).get_token(token_label=token_label)
    with token.open(rw=True, user_pin=pin) as session:
        key = session.get_key(ObjectClass.PRIVATE_KEY, label=label)
        flags = {
            name: bool(key[attribute])
            for name, attribute in (
                ("sensitive", Attribute.SENSITIVE),
                ("extractable", Attribute.EXTRACTABLE),
                ("always_sensitive", Attribute.ALWAYS_SENSITIVE),
                ("never_extractable", Attribute.NEVER_EXTRACTABLE),
                ("local", Attribute.LOCAL),
                ("private", Attribute.PRIVATE),
            )
        }
        secrets = (
            [Attribute.PRIVATE_EXPONENT, Attribute.PRIME_1, Attribute.PRIME_2, Attribute.EXPONENT_1]
            if key.key_type == KeyType.RSA
            else [Attribute.VALUE]
        )
        attempts = {f"read {a.name}": _attempt(lambda a=a: key[a]) for a in secrets}
        wrapping: Any = session.generate_key(
            KeyType.AES, 256, store=False, template={Attribute.WRAP: True}
        )
        attempts["wrap with AES key"] = _attempt(
            lambda: wrapping.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        )

        def make_extractable() -> None:
            key[Attribute.EXTRACTABLE] = True

        def make_readable() -> None:
            key[Attribute.SENSITIVE] = False

        attempts["set CKA_EXTRACTABLE true"] = _attempt(make_extractable)
        attempts["set CKA_SENSITIVE false"] = _attempt(make_readable)
        attempts["copy as extractable"] = _attempt(
            lambda: key.copy({Attribute.EXTRACTABLE: True, Attribute.TOKEN: False})
        )
        flags_after = {
            "sensitive": bool(key[Attribute.SENSITIVE]),
            "extractable": bool(key[Attribute.EXTRACTABLE]),
        }
    return {"flags": flags, "attempts": attempts, "flags_after": flags_after}


if __name__ == "__main__":
    print(json.dumps(probe(*sys.argv[1:5])))
