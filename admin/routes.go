package admin

import (
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// routeTable answers which methods a path has routes for. It matches paths
// as Fiber does with its default settings: case-insensitively, a trailing
// slash ignored, ":name" one non-empty segment, "*" the rest.
type routeTable struct {
	routes []tableRoute
}

type tableRoute struct {
	method   string
	segments []string
}

func newRouteTable(routes []fiber.Route) *routeTable {
	t := &routeTable{}
	for _, r := range routes {
		t.routes = append(t.routes, tableRoute{method: r.Method, segments: split(r.Path)})
	}
	return t
}

func split(path string) []string {
	path = strings.Trim(strings.ToLower(path), "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}

func (r tableRoute) matches(segs []string) bool {
	for i, p := range r.segments {
		switch {
		case p == "*":
			return true
		case i >= len(segs):
			return false
		case strings.HasPrefix(p, ":"):
			if segs[i] == "" {
				return false
			}
		case p != segs[i]:
			return false
		}
	}
	return len(segs) == len(r.segments)
}

// allowed lists the methods with a route for path, sorted; empty if none.
func (t *routeTable) allowed(path string) []string {
	segs := split(path)
	var out []string
	for _, r := range t.routes {
		if r.matches(segs) && !slices.Contains(out, r.method) {
			out = append(out, r.method)
		}
	}
	slices.Sort(out)
	return out
}

// has reports whether a route takes method on path.
func (t *routeTable) has(method, path string) bool {
	return slices.Contains(t.allowed(path), method)
}
