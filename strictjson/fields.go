package strictjson

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode"
)

// fieldInfo is one JSON name a struct accepts.
type fieldInfo struct {
	typ    reflect.Type // the Go field's type (a pointer stays a pointer)
	quoted bool         // tagged ",string"
	// blocked: promoted through an embedded pointer to an unexported
	// struct, which encoding/json cannot allocate ("cannot set embedded
	// pointer to unexported struct").
	blocked bool
}

var fieldCache sync.Map // reflect.Type → map[string]fieldInfo

func cachedFields(t reflect.Type) map[string]fieldInfo {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]fieldInfo)
	}
	f, _ := fieldCache.LoadOrStore(t, typeFields(t))
	return f.(map[string]fieldInfo)
}

// typeFields applies encoding/json's rules (encode.go typeFields) for which
// name reaches which field: json tags, "-", unexported fields skipped,
// untagged embedded structs promoted breadth-first, and among names at the
// same depth a tagged field wins, while two tagged or two untagged ones
// cancel out. It must agree with encoding/json, or Check would call a field
// known that encoding/json drops (FuzzStrictDecode looks for that).
func typeFields(t reflect.Type) map[string]fieldInfo {
	type candidate struct {
		name   string
		tagged bool
		index  []int
		fieldInfo
	}
	type queued struct {
		typ     reflect.Type
		index   []int
		blocked bool
	}
	var current []queued
	next := []queued{{typ: t}}
	var count, nextCount map[reflect.Type]int
	visited := map[reflect.Type]bool{}
	var found []candidate
	for len(next) > 0 {
		current, next = next, nil
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, q := range current {
			if visited[q.typ] {
				continue
			}
			visited[q.typ] = true
			for i := 0; i < q.typ.NumField(); i++ {
				sf := q.typ.Field(i)
				if sf.Anonymous {
					et := sf.Type
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if !sf.IsExported() && et.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validTag(name) {
					name = ""
				}
				index := append(slices.Clone(q.index), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					quoted := false
					if slices.Contains(strings.Split(opts, ","), "string") {
						switch ft.Kind() {
						case reflect.Bool,
							reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
							reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
							reflect.Float32, reflect.Float64, reflect.String:
							quoted = true
						}
					}
					c := candidate{name: name, tagged: name != "", index: index,
						fieldInfo: fieldInfo{typ: sf.Type, quoted: quoted, blocked: q.blocked}}
					if c.name == "" {
						c.name = sf.Name
					}
					found = append(found, c)
					if count[q.typ] > 1 {
						// The same struct embedded twice at this depth:
						// its names cancel out, as in encoding/json.
						found = append(found, c)
					}
					continue
				}
				nextCount[ft]++
				if nextCount[ft] == 1 {
					blocked := q.blocked || (sf.Type.Kind() == reflect.Pointer && !sf.IsExported())
					next = append(next, queued{typ: ft, index: index, blocked: blocked})
				}
			}
		}
	}
	slices.SortFunc(found, func(a, b candidate) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := cmp.Compare(len(a.index), len(b.index)); c != 0 {
			return c
		}
		if a.tagged != b.tagged {
			if a.tagged {
				return -1
			}
			return 1
		}
		return slices.Compare(a.index, b.index)
	})
	out := map[string]fieldInfo{}
	for i := 0; i < len(found); {
		j := i + 1
		for j < len(found) && found[j].name == found[i].name {
			j++
		}
		// found[i] dominates unless the next one ties on depth and tag.
		if j-i == 1 || len(found[i].index) != len(found[i+1].index) || found[i].tagged != found[i+1].tagged {
			out[found[i].name] = found[i].fieldInfo
		}
		i = j
	}
	return out
}

func validTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}
