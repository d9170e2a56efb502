// The guide's JWT verification snippet, unmodified, with jsonwebtoken.
const jwt = require('jsonwebtoken');

function verifyJWT(token, secret) {
  try {
    const decoded = jwt.verify(token, secret, {
      algorithms: ['HS256'],
    });
    return { valid: true, payload: decoded };
  } catch (error) {
    return { valid: false, error: error.message };
  }
}

const [token, secret] = process.argv.slice(2);
const result = verifyJWT(token, secret);
console.log(JSON.stringify(result));
process.exit(result.valid ? 0 : 1);
