package xdsclient

import (
	"maps"

	"google.golang.org/protobuf/proto"
)

// Status is what the client last accepted and rejected, per type URL, for config dumps.
type Status struct {
	Types map[string]TypeStatus
}

// TypeStatus is the state of one resource type.
type TypeStatus struct {
	Version   string
	Names     []string // subscribed names; nil for wildcard
	Resources map[string]proto.Message
	LastNACK  string
}

// Status returns the latest status; safe to call from any goroutine.
func (c *Client) Status() *Status { return c.status.Load() }

func (c *Client) publishStatus() {
	s := &Status{Types: map[string]TypeStatus{}}
	for _, t := range c.typeOrder() {
		st := c.types[t]
		s.Types[t] = TypeStatus{
			Version:   st.version,
			Names:     append([]string(nil), st.names...),
			Resources: maps.Clone(st.protos),
			LastNACK:  st.lastNACK,
		}
	}
	c.status.Store(s)
}
