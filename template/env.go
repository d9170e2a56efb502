package template

import (
	"os"
	"path/filepath"
	"strings"
)

// EnvSource answers {{env.NAME}} from operator-allowed names only: an explicit
// allow-list of process environment variables, and/or the files of a secrets
// directory (one file per name, as Kubernetes mounts a Secret). The rest of
// the process environment is never reachable from a template.
type EnvSource struct {
	allow      map[string]bool
	secretsDir string
	getenv     func(string) (string, bool)
}

// NewEnvSource builds a source from the allow-list and secrets directory.
func NewEnvSource(allow []string, secretsDir string) *EnvSource {
	e := &EnvSource{allow: map[string]bool{}, secretsDir: secretsDir, getenv: os.LookupEnv}
	for _, n := range allow {
		e.allow[n] = true
	}
	return e
}

// EnvAllowed reports whether a template may reference name.
func (e *EnvSource) EnvAllowed(name string) bool {
	if e == nil {
		return false
	}
	if e.allow[name] {
		return true
	}
	_, ok := e.secretFile(name)
	return ok
}

func (e *EnvSource) secretFile(name string) (string, bool) {
	if e.secretsDir == "" || name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return "", false
	}
	p := filepath.Join(e.secretsDir, name)
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
		return "", false
	}
	return p, true
}

// Lookup returns an allowed name's value. Secret files win over the
// environment; a trailing newline (as editors and `kubectl create secret`
// from files leave) is trimmed.
func (e *EnvSource) Lookup(name string) (string, bool) {
	if e == nil {
		return "", false
	}
	if p, ok := e.secretFile(name); ok {
		b, err := os.ReadFile(p)
		if err == nil {
			return strings.TrimRight(string(b), "\r\n"), true
		}
	}
	if e.allow[name] {
		return e.getenv(name)
	}
	return "", false
}
