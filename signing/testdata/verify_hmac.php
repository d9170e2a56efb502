<?php
// The guide's PHP snippet, unmodified.
function verifyHMAC($body, $signature, $secret) {
    list($algo, $hash) = explode('=', $signature, 2);
    $expected = hash_hmac('sha256', $body, $secret);
    
    return hash_equals($hash, $expected);
}

exit(verifyHMAC(file_get_contents($argv[1]), $argv[2], $argv[3]) ? 0 : 1);
