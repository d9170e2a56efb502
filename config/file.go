package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// A configuration file (webhookd serve --config FILE, or WEBHOOKD_CONFIG) is
// a YAML mapping of settings, one key per WEBHOOKD_* variable: the
// variable's name without WEBHOOKD_, in lower case (WEBHOOKD_KAFKA_BROKERS
// is kafka_brokers). Environment variables win over the file, the file over
// the defaults. Unknown keys, repeated keys and values of the wrong type are
// errors naming the key and its line. A key with no value (null) is as if it
// were absent. Comma-separated settings may also be written as a YAML list.

// ConfigEnv names the variable read for the configuration file's path when
// --config is not given.
const ConfigEnv = "WEBHOOKD_CONFIG"

// Key is the configuration-file key of a WEBHOOKD_* variable.
func Key(env string) string { return strings.ToLower(strings.TrimPrefix(env, "WEBHOOKD_")) }

// origin is where a setting's value came from; the zero value is the default.
type origin struct {
	env  bool
	file string
	line int
}

// listSettings are comma-separated settings, which a file may also write as
// YAML lists.
var listSettings = map[string]bool{
	"WEBHOOKD_ROLES": true, "WEBHOOKD_TEMPLATE_ENV_ALLOW": true, "WEBHOOKD_KAFKA_BROKERS": true,
	"WEBHOOKD_EVENT_TOPICS": true, "WEBHOOKD_RETRY_TIERS": true, "WEBHOOKD_ALLOWED_TARGET_CIDRS": true,
}

// Secret reports whether a setting holds a secret (a token, password or
// key, not the name of a file holding one): `webhookd config` never prints
// it.
func Secret(env string) bool {
	for _, s := range []string{"_TOKEN", "_PASSWORD", "_SECRET", "_KEY"} {
		if strings.HasSuffix(env, s) {
			return true
		}
	}
	return false
}

// Problem is one reason a configuration is refused.
type Problem struct {
	Env   string // the setting's variable (WEBHOOKD_…); "" for a problem of the file as a whole
	Where string // how the setting is named to the user, with where its value came from
	Msg   string
}

func (p Problem) Error() string { return p.Where + ": " + p.Msg }

// Problems are every problem found, in order; Load returns them as its error.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Error()
	}
	return strings.Join(s, "\n")
}

// Has reports whether a problem concerns the setting env.
func (ps Problems) Has(env string) bool {
	return slices.ContainsFunc(ps, func(p Problem) bool { return p.Env == env })
}

func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// where names a setting in an error message: by its file key and line if
// the file set it, by its variable otherwise (marked "environment" if the
// environment set it; with its file key too if a file is in use).
func (c *Config) where(env string) string {
	o := c.src[env]
	switch {
	case o.env:
		return env + " (environment)"
	case o.file != "":
		return fmt.Sprintf("%s (%s line %d)", Key(env), o.file, o.line)
	case c.file != "":
		return env + " / " + Key(env)
	}
	return env
}

func (c *Config) setOrigin(env string, o origin) {
	if c.src == nil {
		c.src = map[string]origin{}
	}
	c.src[env] = o
}

// LoadFile returns the mode's defaults overridden by the YAML file at path
// (none if path is empty), then by the environment, and validated. Its error
// is Problems listing every problem found.
func LoadFile(mode Mode, path string, getenv func(string) string) (Config, error) {
	c := Defaults(mode)
	if getenv == nil {
		getenv = os.Getenv
	}
	var ps Problems
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, Problems{{Where: "configuration file", Msg: err.Error()}}
		}
		ps = append(ps, c.applyYAML(path, b)...)
	}
	if err := c.apply(getenv); err != nil {
		ps = append(ps, err.(Problems)...)
	}
	if err := c.Validate(); err != nil {
		ps = append(ps, err.(Problems)...)
	}
	return c, ps.err()
}

// ParseYAML applies a configuration file's content (named name in errors)
// over c without validating the result.
func (c *Config) ParseYAML(name string, data []byte) error { return c.applyYAML(name, data).err() }

type field struct {
	env string
	v   reflect.Value
}

func (c *Config) fields() []field {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	var out []field
	for i := 0; i < t.NumField(); i++ {
		if name := t.Field(i).Tag.Get("env"); name != "" && name != "-" {
			out = append(out, field{name, v.Field(i)})
		}
	}
	return out
}

func (c *Config) applyYAML(name string, data []byte) Problems {
	c.file = name
	var ps Problems
	whole := func(line int, format string, a ...any) {
		ps = append(ps, Problem{Where: fmt.Sprintf("%s line %d", name, line), Msg: fmt.Sprintf(format, a...)})
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file
		}
		return Problems{{Where: name, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		whole(extra.Line, "a configuration file holds one YAML document")
		return ps
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		whole(root.Line, "must be a mapping of settings such as kafka_brokers: broker:9092")
		return ps
	}
	byKey := map[string]field{}
	for _, f := range c.fields() {
		byKey[Key(f.env)] = f
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			whole(k.Line, "keys must be setting names such as kafka_brokers")
			continue
		}
		f, ok := byKey[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown key %q", k.Value)
			if s := suggest(k.Value, byKey); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			whole(k.Line, "%s", msg)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			whole(k.Line, "key %q is set twice (first on line %d)", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		at := origin{file: name, line: k.Line}
		bad := func(format string, a ...any) {
			ps = append(ps, Problem{Env: f.env, Where: fmt.Sprintf("%s (%s line %d)", k.Value, name, k.Line), Msg: fmt.Sprintf(format, a...)})
		}
		var raw string
		switch {
		case v.Kind == yaml.AliasNode:
			bad("aliases are not supported")
			continue
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			continue
		case v.Kind == yaml.ScalarNode:
			raw = v.Value
		case v.Kind == yaml.SequenceNode && listSettings[f.env]:
			items := make([]string, 0, len(v.Content))
			ok := true
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode || strings.Contains(it.Value, ",") {
					ok = false
					break
				}
				items = append(items, it.Value)
			}
			if !ok {
				bad("list items must be plain values without commas")
				continue
			}
			raw = strings.Join(items, ",")
		case v.Kind == yaml.SequenceNode:
			bad("takes one value, not a list")
			continue
		default:
			bad("takes a value, not a mapping")
			continue
		}
		if msg := set(f.v, raw); msg != "" {
			bad("%s", msg)
			continue
		}
		c.setOrigin(f.env, at)
	}
	return ps
}

// set parses raw into f; it returns why it cannot ("" if it could).
func set(f reflect.Value, raw string) string {
	switch f.Interface().(type) {
	case string:
		f.SetString(raw)
	case bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Sprintf("%q is not true or false", raw)
		}
		f.SetBool(b)
	case int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Sprintf("%q is not a whole number", raw)
		}
		f.SetInt(int64(n))
	case float64:
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Sprintf("%q is not a number", raw)
		}
		f.SetFloat(x)
	case time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Sprintf("%q is not a duration such as 30s or 5m", raw)
		}
		f.SetInt(int64(d))
	}
	return ""
}

// suggest returns the known key closest to an unknown one, if any is close.
func suggest(key string, known map[string]field) string {
	best, bestD := "", 4
	if len(key) > 64 {
		return ""
	}
	for k := range known {
		if d := distance(key, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// UnknownEnv lists the WEBHOOKD_* variables in environ (os.Environ's form)
// that are no setting: likely misspelt. WEBHOOKD_CONFIG and WEBHOOKD_TEST_*
// are not settings but not unknown either.
func UnknownEnv(environ []string) []string {
	known := map[string]bool{ConfigEnv: true}
	for _, d := range Docs() {
		known[d.Env] = true
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "WEBHOOKD_") && !strings.HasPrefix(k, "WEBHOOKD_TEST_") && !known[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
