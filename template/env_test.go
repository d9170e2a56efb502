package template

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnvSourceReadsOnlyAllowedNames(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "PARTNER_KEY"), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "SUBDIR"), 0o700); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(filepath.Dir(dir), "outside-secret")
	_ = os.WriteFile(outside, []byte("nope"), 0o600)
	defer os.Remove(outside)
	t.Setenv("CRM_KEY", "from-env")
	t.Setenv("DATABASE_PASSWORD", "must-not-leak")

	e := NewEnvSource([]string{"CRM_KEY"}, dir)
	for name, want := range map[string]string{"CRM_KEY": "from-env", "PARTNER_KEY": "from-file"} {
		if v, ok := e.Lookup(name); !ok || v != want || !e.EnvAllowed(name) {
			t.Errorf("%s = %q %v", name, v, ok)
		}
	}
	for _, name := range []string{"DATABASE_PASSWORD", "SUBDIR", "../outside-secret", ".hidden", "", "a/b"} {
		if v, ok := e.Lookup(name); ok || e.EnvAllowed(name) {
			t.Errorf("%q readable: %q", name, v)
		}
	}
	var none *EnvSource
	if _, ok := none.Lookup("CRM_KEY"); ok || none.EnvAllowed("CRM_KEY") {
		t.Error("nil source allowed a name")
	}
}
