// Verifies a Standard Webhooks request with the standard's reference
// library (npm "standardwebhooks"), as a receiver would:
//   node verify_standard.js <body file> <webhook-id> <webhook-timestamp> <webhook-signature> <whsec_ secret>
// Exit 0 when the library accepts the request, 1 when it rejects it.
const fs = require('fs');
const { Webhook } = require('standardwebhooks');

const [bodyFile, id, timestamp, signature, secret] = process.argv.slice(2);
const payload = fs.readFileSync(bodyFile, 'utf8');
try {
  new Webhook(secret).verify(payload, {
    'webhook-id': id,
    'webhook-timestamp': timestamp,
    'webhook-signature': signature,
  });
  console.log('verified');
  process.exit(0);
} catch (e) {
  console.log('rejected: ' + e.message);
  process.exit(1);
}
