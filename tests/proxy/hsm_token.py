"""Make a SoftHSM2 token for the gateway tests, in a child process (its PKCS#11 state must not
mix with the signers of the test process, see tests/keys/conftest.py):

    SOFTHSM2_CONF=... python -m tests.proxy.hsm_token FOLDER

Creates token `gateway` (PIN in FOLDER/pin.txt), an ECDSA P-256 key `gw-ec` and an RSA-2048 key
`gw-rsa` generated inside it (sensitive, not extractable), and for each FOLDER/<label>.pem: a
certificate for `localhost` issued by a test CA (FOLDER/ca.pem).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

from tests.keys.conftest import MODULE, issue_leaf
from tests.tls.pki import CertAuthority

TOKEN = "gateway"
PIN = "4321"
LABELS = ("gw-ec", "gw-rsa")


def main(folder: Path) -> None:
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN]
        + ["--pin", PIN, "--so-pin", "87654321"],
        check=True,
        capture_output=True,
    )
    (folder / "pin.txt").write_text(PIN + "\n")
    (folder / "pin.txt").chmod(0o600)  # a secret file: anything wider gets a warning
    ca = CertAuthority("gateway HSM test CA")
    (folder / "ca.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    private = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.SIGN: True}
    token = pkcs11.lib(MODULE).get_token(token_label=TOKEN)
    with token.open(rw=True, user_pin=PIN) as session:
        public, _ = session.generate_keypair(
            KeyType.RSA, 2048, store=True, label="gw-rsa", id=b"\x02", private_template=private
        )
        rsa_key = rsa.RSAPublicNumbers(
            int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(public[Attribute.MODULUS], "big"),
        ).public_key()
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        public, _ = params.generate_keypair(
            store=True,
            label="gw-ec",
            id=b"\x01",
            private_template=private,
            mechanism=Mechanism.EC_KEY_PAIR_GEN,
        )
        point = bytes(public[Attribute.EC_POINT])
        ec_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point[2:])
    for label, key in (("gw-ec", ec_key), ("gw-rsa", rsa_key)):
        leaf = issue_leaf(ca, key, "localhost")
        (folder / f"{label}.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
