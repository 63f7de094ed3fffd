"""Make a SoftHSM2 token in a folder and generate key pairs inside it; print their public keys.

Run in a child process with SOFTHSM2_CONF pointing into the folder (python-pkcs11 loads a
module once per process, and the test process must not depend on which SoftHSM2 configuration
it saw first):

    SOFTHSM2_CONF=F/softhsm2.conf python tests/e2e/hsm_token.py F

Prints JSON {label: SubjectPublicKeyInfo PEM}. The keys are made as in tests/keys/conftest.py
(sensitive and not extractable, generated on the token), plus `loose-ec`, which is extractable:
the positive control for the probe that tries to get keys out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "outwork"
PIN = "1234"
SO_PIN = "5678"
# label -> (kind, CKA_ID, extractable)
KEYS = {
    "api-ec": ("ecdsa-p256", b"\x01", False),
    "api-rsa": ("rsa-2048", b"\x02", False),
    "loose-ec": ("ecdsa-p256", b"\x03", True),
}


def main(folder: Path) -> None:
    import pkcs11
    from cryptography.hazmat.primitives import serialization

    from tests.keys.conftest import _generate, _public_key

    util = shutil.which("softhsm2-util")
    if util is None:
        raise SystemExit("softhsm2-util is missing (Debian package softhsm2)")
    subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
    )
    token = pkcs11.lib(MODULE).get_token(token_label=TOKEN)
    out: dict[str, str] = {}
    with token.open(rw=True, user_pin=PIN) as session:
        for label, (kind, key_id, extractable) in KEYS.items():
            public = _generate(session, label, kind, key_id, extractable)
            out[label] = (
                _public_key(kind, public)
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
