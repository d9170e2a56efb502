// The guide's "Signature Verification" Node.js snippet, unmodified.
const crypto = require('crypto');

function verifyHMAC(body, signature, secret) {
  const [algo, hash] = signature.split('=');
  const expected = crypto
    .createHmac('sha256', secret)
    .update(body)
    .digest('hex');
  
  return crypto.timingSafeEqual(
    Buffer.from(hash),
    Buffer.from(expected)
  );
}

const fs = require('fs');
const [bodyFile, signature, secret] = process.argv.slice(2);
process.exit(verifyHMAC(fs.readFileSync(bodyFile), signature, secret) ? 0 : 1);
