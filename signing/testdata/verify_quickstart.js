// The guide's quick-start verifyWebhook, unmodified, then a check of argv.
const crypto = require('crypto');

function verifyWebhook(body, signature, secret) {
  const expected = 'sha256=' + crypto
    .createHmac('sha256', secret)
    .update(body)
    .digest('hex');
  
  return crypto.timingSafeEqual(
    Buffer.from(signature),
    Buffer.from(expected)
  );
}

const fs = require('fs');
const [bodyFile, signature, secret] = process.argv.slice(2);
// express.raw gives a Buffer; the guide calls req.body.toString().
const body = fs.readFileSync(bodyFile).toString();
process.exit(verifyWebhook(body, signature, secret) ? 0 : 1);
