package config

import (
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// YAML is the configuration as a configuration file: every setting, with
// where its value came from as a comment. Secrets (Secret) that are set are
// written as null, "not set", so the output can be used as a file with the
// secrets given in the environment; a password in a URL is masked.
func (c *Config) YAML() []byte {
	root := &yaml.Node{Kind: yaml.MappingNode}
	for _, f := range c.fields() {
		k := &yaml.Node{Kind: yaml.ScalarNode, Value: Key(f.env)}
		v := valueNode(f.env, f.v)
		var notes []string
		if o, ok := c.src[f.env]; ok {
			if o.env {
				notes = append(notes, "from "+f.env)
			} else {
				notes = append(notes, fmt.Sprintf("from %s line %d", o.file, o.line))
			}
		}
		if Secret(f.env) && f.v.String() != "" {
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "~"}
			notes = append([]string{"redacted: set, give it in the environment"}, notes...)
		} else if masked, ok := maskURLPasswords(v); ok {
			v = masked
			notes = append([]string{"password redacted"}, notes...)
		}
		if len(notes) > 0 {
			v.LineComment = strings.Join(notes, "; ")
		}
		root.Content = append(root.Content, k, v)
	}
	return marshal(root)
}

// Example is the documented example configuration file
// (deploy/webhookd.example.yaml): every setting with its meaning, variable
// and defaults, commented out at its serve-mode default.
func Example() []byte {
	var b strings.Builder
	b.WriteString(`# webhookd configuration file: webhookd serve --config FILE (or WEBHOOKD_CONFIG=FILE).
#
# Generated from config.Config (go test ./config -run TestExampleFile -update); do not edit.
# Every key is a WEBHOOKD_* variable's name without WEBHOOKD_, in lower case; the
# variable, when set, wins over the file. Unknown keys are errors. Comma-separated
# settings may be written as YAML lists. Each setting below is commented out at its
# serve-mode default; "webhookd config --config FILE" prints the result of a file.
`)
	serve, dev := Defaults(ModeServe), Defaults(ModeDev)
	devFields := dev.fields()
	for i, f := range serve.fields() {
		b.WriteString("\n")
		for _, l := range wrap(f.help(), 86) {
			b.WriteString("# " + l + "\n")
		}
		note := f.env
		if d := devFields[i].v; !reflect.DeepEqual(d.Interface(), f.v.Interface()) {
			note += "; dev mode: " + strings.TrimSpace(string(marshal(valueNode(f.env, d))))
		}
		b.WriteString("# (" + note + ")\n")
		root := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Value: Key(f.env)}, valueNode(f.env, f.v)}}
		for _, l := range strings.Split(strings.TrimSuffix(string(marshal(root)), "\n"), "\n") {
			b.WriteString("#" + l + "\n")
		}
	}
	return []byte(b.String())
}

func (f field) help() string {
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("env") == f.env {
			return t.Field(i).Tag.Get("help")
		}
	}
	return ""
}

func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// valueNode is a setting's value as YAML that reads back to the same value.
func valueNode(env string, v reflect.Value) *yaml.Node {
	scalar := func(s, tag string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s, Tag: tag} }
	switch x := v.Interface().(type) {
	case string:
		if listSettings[env] {
			seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, it := range SplitList(x) {
				seq.Content = append(seq.Content, scalar(it, "!!str"))
			}
			return seq
		}
		return scalar(x, "!!str")
	case bool:
		return scalar(strconv.FormatBool(x), "!!bool")
	case int:
		return scalar(strconv.Itoa(x), "!!int")
	case float64:
		return scalar(strconv.FormatFloat(x, 'g', -1, 64), "!!float")
	case time.Duration:
		return scalar(x.String(), "!!str")
	}
	return scalar(fmt.Sprint(v.Interface()), "!!str")
}

// maskURLPasswords returns n with the password of any URL in it masked.
func maskURLPasswords(n *yaml.Node) (*yaml.Node, bool) {
	mask := func(s string) (string, bool) {
		u, err := url.Parse(s)
		if err != nil || u.User == nil {
			return s, false
		}
		if _, ok := u.User.Password(); !ok {
			return s, false
		}
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
		return u.String(), true
	}
	masked := false
	out := *n
	if n.Kind == yaml.ScalarNode {
		out.Value, masked = mask(n.Value)
		return &out, masked
	}
	out.Content = nil
	for _, it := range n.Content {
		c := *it
		var m bool
		c.Value, m = mask(it.Value)
		masked = masked || m
		out.Content = append(out.Content, &c)
	}
	return &out, masked
}

func marshal(n *yaml.Node) []byte {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		panic(err) // nodes built above always encode
	}
	_ = enc.Close()
	return []byte(b.String())
}
