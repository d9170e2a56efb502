// Package filter is a pipeline's content filter: a small query language over
// the same variable paths templates read ({{conversion.amount}},
// {{click.country}}, {{data.x}}, {{event_type}}), resolved by the same
// template.Scope.Lookup, so a filter and a template always see one value.
//
//	{"conversion.amount": {"$gte": 10}, "click.country": {"$in": ["US", "CA"]}}
//
// A filter is a JSON object. Its keys are paths, joined by an implicit AND,
// or "$and" / "$or" holding an array of filters. A path's value is either a
// bare value (meaning $eq) or an object of operators, all of which must hold:
// $eq $neq $gt $gte $lt $lte $in $nin $exists $regex.
//
// Semantics, chosen so that a filter never matches by accident:
//   - values compare only with values of the same JSON type: the number 10
//     never equals the string "10", and "10" is not $gte 5;
//   - $gt, $gte, $lt and $lte take a number and hold only for a number;
//   - $eq, $neq and the elements of $in and $nin are scalars (string, number,
//     boolean, null); an object or array at the path equals none of them;
//   - $regex is an RE2 pattern (Go's regexp: no backreferences, linear time)
//     and holds only for a string; it is not anchored (use ^ and $);
//   - a path the event does not have satisfies only $exists: false, $neq and
//     $nin; a path holding null exists and equals null;
//   - numbers compare by value: exactly when both are integers that fit in
//     64 bits, else as float64.
//
// A filter is parsed and compiled once, with its pipeline; Match allocates
// nothing.
package filter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/template"
)

// Limits. A filter is configuration, written by an operator, but it runs on
// every event of its trigger type: the bounds keep parsing and matching cheap
// whatever is saved.
const (
	// MaxBytes bounds a filter's JSON text.
	MaxBytes = 64 << 10
	// MaxDepth bounds the nesting of $and / $or.
	MaxDepth = 8
	// MaxConditions bounds the operators of a filter, all levels together.
	MaxConditions = 256
	// MaxList bounds the values of one $in or $nin.
	MaxList = 1000
	// MaxPatternBytes bounds a $regex pattern's length.
	MaxPatternBytes = 1024
	// MaxProgramSize bounds a $regex's compiled size (RE2 program
	// instructions); it catches patterns that are short but expand, such
	// as counted repetitions (a{1000}).
	MaxProgramSize = 5000
)

// Operators, as a filter spells them.
const (
	OpEq     = "$eq"
	OpNeq    = "$neq"
	OpGt     = "$gt"
	OpGte    = "$gte"
	OpLt     = "$lt"
	OpLte    = "$lte"
	OpIn     = "$in"
	OpNin    = "$nin"
	OpExists = "$exists"
	OpRegex  = "$regex"
	OpAnd    = "$and"
	OpOr     = "$or"
)

const knownOps = "$eq, $neq, $gt, $gte, $lt, $lte, $in, $nin, $exists, $regex"

// Problem is one thing wrong with a filter. Path is where, relative to the
// filter ("conversion.amount.$gte", "$or[1].click.country.$in[2]"); "" is
// the filter itself.
type Problem struct {
	Path    string
	Message string
}

// Error lists every problem of a filter.
type Error struct{ Problems []Problem }

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Message
		if p.Path != "" {
			parts[i] = p.Path + ": " + p.Message
		}
	}
	return "invalid filter: " + strings.Join(parts, "; ")
}

// maxProblems bounds an Error (a filter of a thousand bad values is one
// answer, not a thousand lines).
const maxProblems = 50

// Filter is a compiled filter. It is safe for concurrent use.
type Filter struct {
	root node
	// Conditions is the number of operators, all levels together.
	Conditions int
}

// Match reports whether the event whose variables v resolves passes the
// filter. A nil Filter matches everything.
func (f *Filter) Match(v template.Vars) bool {
	if f == nil {
		return true
	}
	return f.root.match(v)
}

// Vars are the variables a filter reads for an event: the same values, under
// the same names, as the event's deliveries' templates see
// (dispatcher.Scope).
func Vars(ev *event.Event) *template.Scope {
	return &template.Scope{System: System(ev), Objects: ev.Objects, Data: ev.Data}
}

// System is the event's system variables, those a filter reads; a
// delivery's scope adds its own to them.
func System(ev *event.Event) template.System {
	return template.System{TriggerType: ev.TriggerType, TriggerID: ev.TriggerID, EventID: ev.ID, EventType: ev.Type, EventTimestamp: ev.Timestamp}
}

// IsEmpty reports whether raw is no filter at all: absent, null or {}.
func IsEmpty(raw []byte) bool {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return true
	}
	if len(t) < 2 || t[0] != '{' || t[len(t)-1] != '}' {
		return false
	}
	return len(bytes.TrimSpace(t[1:len(t)-1])) == 0
}

// Parse checks and compiles a filter. An empty one (see IsEmpty) is nil,
// which matches everything. Problems come back together as an *Error.
func Parse(raw []byte) (*Filter, error) {
	if IsEmpty(raw) {
		return nil, nil
	}
	p := &parser{}
	if len(raw) > MaxBytes {
		p.add("", "is longer than %d bytes", MaxBytes)
		return nil, p.err()
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		p.add("", "is not valid JSON: %v", err)
		return nil, p.err()
	}
	if len(bytes.TrimSpace(raw[dec.InputOffset():])) > 0 {
		p.add("", "is not valid JSON: data after the filter")
		return nil, p.err()
	}
	obj, ok := v.(map[string]any)
	if !ok {
		p.add("", "must be an object of conditions, as in {\"conversion.amount\": {\"$gte\": 10}}")
		return nil, p.err()
	}
	if len(obj) == 0 {
		return nil, nil
	}
	root := p.filter("", obj, 0)
	if p.conditions > MaxConditions {
		p.add("", "has %d conditions, more than the %d allowed", p.conditions, MaxConditions)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return &Filter{root: root, Conditions: p.conditions}, nil
}

type parser struct {
	problems   []Problem
	omitted    int
	conditions int
}

func (p *parser) add(path, format string, a ...any) {
	if len(p.problems) >= maxProblems {
		p.omitted++
		return
	}
	p.problems = append(p.problems, Problem{Path: path, Message: fmt.Sprintf(format, a...)})
}

func (p *parser) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	e := &Error{Problems: p.problems}
	if p.omitted > 0 {
		e.Problems = append(e.Problems, Problem{Message: fmt.Sprintf("%d more problems are not listed", p.omitted)})
	}
	return e
}

func join(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// filter compiles one filter object: the AND of its keys.
func (p *parser) filter(at string, obj map[string]any, depth int) node {
	if depth > MaxDepth {
		p.add(at, "nests $and / $or more than %d levels deep", MaxDepth)
		return nil
	}
	var all and
	for _, k := range sortedKeys(obj) {
		v := obj[k]
		kp := join(at, k)
		switch {
		case k == OpAnd || k == OpOr:
			if n := p.list(kp, k, v, depth); n != nil {
				all = append(all, n)
			}
		case strings.HasPrefix(k, "$"):
			p.add(kp, "is not a filter key: a filter's keys are variable paths (conversion.amount, click.country, data.x, event_type) or $and / $or; %s go inside a path's object", knownOps)
		default:
			if n := p.path(kp, k, v); n != nil {
				all = append(all, n)
			}
		}
	}
	if len(all) == 1 {
		return all[0]
	}
	return all
}

// list compiles $and / $or.
func (p *parser) list(at, op string, v any, depth int) node {
	arr, ok := v.([]any)
	if !ok {
		p.add(at, "must be an array of filters")
		return nil
	}
	if len(arr) == 0 {
		p.add(at, "must hold at least one filter")
		return nil
	}
	nodes := make([]node, 0, len(arr))
	for i, el := range arr {
		ep := fmt.Sprintf("%s[%d]", at, i)
		obj, ok := el.(map[string]any)
		if !ok {
			p.add(ep, "must be an object (a filter)")
			continue
		}
		if len(obj) == 0 {
			p.add(ep, "must hold at least one condition")
			continue
		}
		if n := p.filter(ep, obj, depth+1); n != nil {
			nodes = append(nodes, n)
		}
	}
	if op == OpOr {
		return or(nodes)
	}
	return and(nodes)
}

// path compiles a variable path's condition.
func (p *parser) path(at, key string, v any) node {
	segs, err := template.ParsePath(key)
	if err != nil {
		p.add(at, "is not a variable path: %v", err)
		return nil
	}
	if err := checkRoot(segs); err != "" {
		p.add(at, "%s", err)
		return nil
	}
	c := &cond{path: segs}
	obj, isObj := v.(map[string]any)
	switch {
	case isObj && len(obj) == 0:
		p.add(at, "must hold at least one operator (%s)", knownOps)
		return nil
	case isObj:
		for _, k := range sortedKeys(obj) {
			if !strings.HasPrefix(k, "$") {
				p.add(at, "an object here must hold operators (%s), not %q: values compare only with strings, numbers, booleans and null", knownOps, k)
				return nil
			}
		}
		for _, k := range sortedKeys(obj) {
			if o, ok := p.op(join(at, k), k, obj[k]); ok {
				c.ops = append(c.ops, o)
			}
		}
	case isArray(v):
		p.add(at, "an array cannot be compared; use {\"$in\": [...]} to match any of several values")
		return nil
	default: // a bare value means $eq
		o, _ := p.op(at, OpEq, v)
		c.ops = append(c.ops, o)
	}
	return c
}

func isArray(v any) bool {
	_, ok := v.([]any)
	return ok
}

// checkRoot says why a path cannot be filtered on ("" when it can): the
// namespaces are the templates' (template.CheckNamespace), less what is not
// part of the event itself.
func checkRoot(segs []string) string {
	switch root := segs[0]; {
	case root == "env":
		return "env values cannot be filtered on"
	case root == "steps":
		return "step results are not known when an event is filtered"
	case notOfTheEvent[root]:
		return root + " is not part of the event (it is set per pipeline, delivery or attempt); filter on the event's own fields: trigger_type, trigger_id, event_id, event_type, event_timestamp, click.*, conversion.*, offer.*, postback.*, fraud.*, user.*, api_key.*, data.*"
	}
	if err := template.CheckNamespace(template.Placeholder{Path: segs}); err != nil {
		return strings.TrimPrefix(err.Error(), "{{"+strings.Join(segs, ".")+"}}: ")
	}
	return ""
}

// notOfTheEvent are the template's system variables an event does not
// define (the rest are eventVars).
var notOfTheEvent = map[string]bool{
	"pipeline_id": true, "pipeline_name": true, "delivery_id": true, "execution_id": true,
	"timestamp": true, "timestamp_unix": true, "uuid": true, "nonce": true, "retry_count": true,
}

// op compiles one operator.
func (p *parser) op(at, name string, v any) (op, bool) {
	p.conditions++
	o := op{kind: name}
	switch name {
	case OpEq, OpNeq:
		s, ok := p.scalar(at, v)
		if !ok {
			return o, false
		}
		o.val = s
	case OpGt, OpGte, OpLt, OpLte:
		n, isNum := v.(json.Number)
		if !isNum {
			p.add(at, "must be a number")
			return o, false
		}
		s, ok := p.scalar(at, n)
		if !ok {
			return o, false
		}
		o.val = s
	case OpIn, OpNin:
		arr, ok := v.([]any)
		if !ok {
			p.add(at, "must be an array of strings, numbers, booleans or null")
			return o, false
		}
		if len(arr) > MaxList {
			p.add(at, "has %d values, more than the %d allowed", len(arr), MaxList)
			return o, false
		}
		good := true
		for i, el := range arr {
			s, ok := p.scalar(fmt.Sprintf("%s[%d]", at, i), el)
			if !ok {
				good = false
				continue
			}
			o.set = append(o.set, s)
		}
		if !good {
			return o, false
		}
	case OpExists:
		b, ok := v.(bool)
		if !ok {
			p.add(at, "must be true or false")
			return o, false
		}
		o.exists = b
	case OpRegex:
		s, ok := v.(string)
		if !ok {
			p.add(at, "must be a string (an RE2 regular expression)")
			return o, false
		}
		re, msg := compileRegex(s)
		if msg != "" {
			p.add(at, "%s", msg)
			return o, false
		}
		o.re = re
	default:
		p.add(at, "is not an operator (known: %s)", knownOps)
		return o, false
	}
	return o, true
}

// compileRegex compiles an RE2 pattern within the size caps; the message
// says why not.
func compileRegex(s string) (*regexp.Regexp, string) {
	if len(s) > MaxPatternBytes {
		return nil, fmt.Sprintf("is longer than %d bytes", MaxPatternBytes)
	}
	re, err := syntax.Parse(s, syntax.Perl)
	if err != nil {
		return nil, "is not a valid RE2 regular expression: " + err.Error()
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, "is not a valid RE2 regular expression: " + err.Error()
	}
	if len(prog.Inst) > MaxProgramSize {
		return nil, fmt.Sprintf("compiles to %d RE2 instructions, more than the %d allowed; simplify it", len(prog.Inst), MaxProgramSize)
	}
	c, err := regexp.Compile(s)
	if err != nil {
		return nil, "is not a valid RE2 regular expression: " + err.Error()
	}
	return c, ""
}

// scalar is a comparable value: string, number, bool or nil.
type scalar struct {
	kind kind
	s    string
	b    bool
	num  number
}

type kind uint8

const (
	kNull kind = iota + 1
	kString
	kNumber
	kBool
	kOther // objects and arrays: equal to no scalar
)

// number is a JSON number, exact when it is an integer that fits in int64.
type number struct {
	i     int64
	isInt bool
	f     float64
}

func (p *parser) scalar(at string, v any) (scalar, bool) {
	switch x := v.(type) {
	case nil:
		return scalar{kind: kNull}, true
	case string:
		return scalar{kind: kString, s: x}, true
	case bool:
		return scalar{kind: kBool, b: x}, true
	case json.Number:
		n, ok := parseNumber(string(x))
		if !ok || math.IsInf(n.f, 0) {
			p.add(at, "is not a number a filter can compare (out of range)")
			return scalar{}, false
		}
		return scalar{kind: kNumber, num: n}, true
	}
	p.add(at, "must be a string, number, boolean or null")
	return scalar{}, false
}

func parseNumber(s string) (number, bool) {
	// Only integers are tried as such: a failed ParseInt allocates its error.
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return number{i: i, isInt: true, f: float64(i)}, true
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return number{}, false
	}
	return number{f: f}, true
}

// cmp compares two numbers: -1, 0 or 1.
func (a number) cmp(b number) int {
	if a.isInt && b.isInt {
		switch {
		case a.i < b.i:
			return -1
		case a.i > b.i:
			return 1
		}
		return 0
	}
	switch {
	case a.f < b.f:
		return -1
	case a.f > b.f:
		return 1
	}
	return 0
}

// valueOf classifies a looked-up value: what encoding/json makes with
// UseNumber, plus the Go numbers a scope may hold.
func valueOf(v any) scalar {
	switch x := v.(type) {
	case nil:
		return scalar{kind: kNull}
	case string:
		return scalar{kind: kString, s: x}
	case bool:
		return scalar{kind: kBool, b: x}
	case json.Number:
		n, ok := parseNumber(string(x))
		if !ok {
			return scalar{kind: kOther}
		}
		return scalar{kind: kNumber, num: n}
	case float64:
		return scalar{kind: kNumber, num: number{f: x}}
	case int:
		return scalar{kind: kNumber, num: number{i: int64(x), isInt: true, f: float64(x)}}
	case int64:
		return scalar{kind: kNumber, num: number{i: x, isInt: true, f: float64(x)}}
	}
	return scalar{kind: kOther}
}

func (a scalar) equal(b scalar) bool {
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case kNull:
		return true
	case kString:
		return a.s == b.s
	case kBool:
		return a.b == b.b
	case kNumber:
		return a.num.cmp(b.num) == 0
	}
	return false
}

type node interface {
	match(v template.Vars) bool
}

type and []node

func (a and) match(v template.Vars) bool {
	for _, n := range a {
		if !n.match(v) {
			return false
		}
	}
	return true
}

type or []node

func (o or) match(v template.Vars) bool {
	return slices.ContainsFunc(o, func(n node) bool { return n.match(v) })
}

// cond is one path's operators: the value is looked up once.
type cond struct {
	path []string
	ops  []op
}

func (c *cond) match(v template.Vars) bool {
	raw, found := v.Lookup(c.path)
	val := scalar{}
	if found {
		val = valueOf(raw)
	}
	for i := range c.ops {
		if !c.ops[i].match(val, raw, found) {
			return false
		}
	}
	return true
}

type op struct {
	kind   string
	val    scalar
	set    []scalar
	exists bool
	re     *regexp.Regexp
}

func (o *op) match(val scalar, raw any, found bool) bool {
	switch o.kind {
	case OpEq:
		return found && val.equal(o.val)
	case OpNeq:
		return !found || !val.equal(o.val)
	case OpGt, OpGte, OpLt, OpLte:
		if !found || val.kind != kNumber {
			return false
		}
		c := val.num.cmp(o.val.num)
		switch o.kind {
		case OpGt:
			return c > 0
		case OpGte:
			return c >= 0
		case OpLt:
			return c < 0
		}
		return c <= 0
	case OpIn:
		return found && o.in(val)
	case OpNin:
		return !found || !o.in(val)
	case OpExists:
		return found == o.exists
	case OpRegex:
		s, ok := raw.(string)
		return found && ok && o.re.MatchString(s)
	}
	return false
}

func (o *op) in(val scalar) bool {
	for i := range o.set {
		if val.equal(o.set[i]) {
			return true
		}
	}
	return false
}
