package main

import (
	"strings"
	"testing"
)

func TestSecureFlagsAreChecked(t *testing.T) {
	if opts, err := secureOpts("", "", "", []string{"PLAIN:a:b", "SCRAM-SHA-512:c:d:with:colons"}); err != nil || len(opts) != 3 {
		t.Fatalf("%d options, %v", len(opts), err)
	}
	for _, tc := range []struct {
		cert, key, ca string
		users         []string
		want          string
	}{
		{"", "", "ca.pem", nil, "-tls-client-ca needs -tls-cert"},
		{"missing.pem", "missing.key", "", nil, "-tls-cert/-tls-key"},
		{"", "", "", []string{"GSSAPI:u:p"}, "is not PLAIN"},
		{"", "", "", []string{"PLAIN:nopass"}, "want MECHANISM:user:password"},
		{"", "", "", []string{"PLAIN::p"}, "want MECHANISM:user:password"},
	} {
		if _, err := secureOpts(tc.cert, tc.key, tc.ca, tc.users); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc, err, tc.want)
		}
	}
}
