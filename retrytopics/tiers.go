// Package retrytopics holds delivery tasks that wait for their next attempt in
// tiered Kafka topics (webhooks.retry.5s, …). A task waiting d goes to the
// largest tier not longer than d; the tier's consumer holds its partition
// until the head record is due (DESIGN.md §4).
package retrytopics

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Tier is one retry topic and the delay it stands for.
type Tier struct {
	Name  string // as configured: "5s", "1m", …
	Delay time.Duration
}

// ParseTiers parses "5s,10s,30s,1m" into tiers sorted by delay.
func ParseTiers(s string) ([]Tier, error) {
	var tiers []Tier
	seen := map[time.Duration]bool{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		d, err := time.ParseDuration(p)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("retry tier %q is not a positive duration such as 5s or 1m", p)
		}
		if seen[d] {
			return nil, fmt.Errorf("retry tier %q is listed twice", p)
		}
		seen[d] = true
		tiers = append(tiers, Tier{Name: p, Delay: d})
	}
	if len(tiers) == 0 {
		return nil, fmt.Errorf("at least one retry tier is required")
	}
	sort.Slice(tiers, func(i, j int) bool { return tiers[i].Delay < tiers[j].Delay })
	return tiers, nil
}

// TopicName is the tier's topic, "webhooks.retry.<tier>" with the prefix.
func TopicName(prefix string, t Tier) string { return prefix + "webhooks.retry." + t.Name }
