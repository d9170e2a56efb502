package admin

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Every route the API serves is in the OpenAPI document, and the reverse.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, r := range New(Options{Token: "x"}).Test().GetRoutes(true) {
		if r.Method == "HEAD" || r.Path == "/" {
			continue
		}
		// A trailing wildcard is one documented parameter.
		segs := strings.Split(strings.Replace(r.Path, "*", "{name}", 1), "/")
		for i, seg := range segs {
			if strings.HasPrefix(seg, ":") {
				segs[i] = "{" + seg[1:] + "}"
			}
		}
		p := strings.Join(segs, "/")
		key := strings.ToLower(r.Method) + " " + p
		served[key] = true
		if _, ok := doc.Paths[p][strings.ToLower(r.Method)]; !ok {
			t.Errorf("served but not documented: %s", key)
		}
	}
	for p, ops := range doc.Paths {
		// OPTIONS is no route: noRoute answers it (204 + Allow) on every
		// path that has one, after the credential check.
		if _, ok := ops["options"]; !ok {
			t.Errorf("OPTIONS not documented: %s", p)
		}
		for m := range ops {
			if m != "parameters" && m != "options" && !served[m+" "+p] {
				t.Errorf("documented but not served: %s %s", m, p)
			}
		}
	}
}
