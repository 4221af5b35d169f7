package gatewayapi

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// conditions builds a status condition list in a fixed order.
type conditions struct {
	gen  int64
	list []metav1.Condition
}

// set adds or replaces the condition of type t.
func (c *conditions) set(t string, ok bool, reason, msg string) {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	cond := metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg, ObservedGeneration: c.gen}
	for i := range c.list {
		if c.list[i].Type == t {
			c.list[i] = cond
			return
		}
	}
	c.list = append(c.list, cond)
}

// get returns the condition of type t.
func (c *conditions) get(t string) (metav1.Condition, bool) {
	for _, cd := range c.list {
		if cd.Type == t {
			return cd, true
		}
	}
	return metav1.Condition{}, false
}

func (c *conditions) isTrue(t string) bool {
	cd, ok := c.get(t)
	return ok && cd.Status == metav1.ConditionTrue
}

// toPlain turns a typed value into JSON-compatible maps and slices for manifests.
func toPlain(v any) any {
	data, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil
	}
	return out
}

// StampTimes sets lastTransitionTime on every condition of a manifest's status that has
// none, to what at returns for it; key names the condition (its place in the status and
// its type) so callers can keep the time of a condition that did not change. The status
// is computed when a config is accepted; tests leave times out to keep golden files
// stable.
func StampTimes(manifest map[string]any, at func(key string, cond map[string]any) time.Time) {
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "conditions" {
					list, _ := e.([]any)
					for _, c := range list {
						m, ok := c.(map[string]any)
						if !ok {
							continue
						}
						if s, _ := m["lastTransitionTime"].(string); s == "" || strings.HasPrefix(s, "0001-") {
							key := path + "." + fmt.Sprint(m["type"])
							m["lastTransitionTime"] = at(key, m).UTC().Format(time.RFC3339)
						}
					}
					continue
				}
				walk(e, path+"."+k)
			}
		case []any:
			for i, e := range x {
				walk(e, path+"["+strconv.Itoa(i)+"]")
			}
		}
	}
	walk(manifest["status"], "status")
}
