# The guide's Python snippet, unmodified.
import hmac
import hashlib

def verify_hmac(body: bytes, signature: str, secret: str) -> bool:
    algo, hash_value = signature.split('=')
    expected = hmac.new(
        secret.encode(),
        body,
        hashlib.sha256
    ).hexdigest()
    
    return hmac.compare_digest(hash_value, expected)

import sys
with open(sys.argv[1], 'rb') as f:
    sys.exit(0 if verify_hmac(f.read(), sys.argv[2], sys.argv[3]) else 1)
