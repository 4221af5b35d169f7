// Package validate checks that a received xDS message sets only the fields skein's proxy
// understands. It walks every populated field with protoreflect, opening Any payloads,
// so an unsupported field anywhere in a resource is reported by its full name instead of
// being silently ignored (docs/XDS.md: unknown field => NACK).
package validate

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// UnsupportedFieldError names the first field that is set but not allowed.
type UnsupportedFieldError struct {
	Field protoreflect.FullName
}

func (e *UnsupportedFieldError) Error() string {
	return "unsupported field " + string(e.Field)
}

// UnsupportedTypeError names an Any payload type that is not allowed.
type UnsupportedTypeError struct {
	TypeURL string
}

func (e *UnsupportedTypeError) Error() string {
	return "unsupported type " + e.TypeURL
}

// Allowlist holds full field names (message.field) and the full names of the message
// types allowed inside google.protobuf.Any.
type Allowlist struct {
	fields   map[protoreflect.FullName]bool
	anyTypes map[protoreflect.FullName]bool
}

// NewAllowlist builds an allowlist from field names and Any payload type names.
func NewAllowlist(fields, anyTypes []string) *Allowlist {
	a := &Allowlist{
		fields:   make(map[protoreflect.FullName]bool, len(fields)),
		anyTypes: make(map[protoreflect.FullName]bool, len(anyTypes)),
	}
	for _, f := range fields {
		a.fields[protoreflect.FullName(f)] = true
	}
	for _, t := range anyTypes {
		a.anyTypes[protoreflect.FullName(t)] = true
	}
	return a
}

// maxDepth bounds recursion so hostile nested Any payloads cannot exhaust the stack.
const maxDepth = 64

// Message returns an error naming the first populated field of m (recursively) that the
// allowlist does not contain.
func (a *Allowlist) Message(m proto.Message) error {
	return a.walk(m.ProtoReflect(), 0)
}

func (a *Allowlist) walk(m protoreflect.Message, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("message nested deeper than %d", maxDepth)
	}
	if len(m.GetUnknown()) > 0 {
		return fmt.Errorf("unknown fields in %s", m.Descriptor().FullName())
	}
	if m.Descriptor().FullName() == "google.protobuf.Any" {
		return a.walkAny(m, depth)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !a.fields[fd.FullName()] {
			err = &UnsupportedFieldError{Field: fd.FullName()}
			return false
		}
		err = a.walkValue(fd, v, depth)
		return err == nil
	})
	return err
}

func (a *Allowlist) walkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, depth int) error {
	switch {
	case fd.IsMap():
		if fd.MapValue().Kind() != protoreflect.MessageKind {
			return nil
		}
		var err error
		v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
			err = a.walk(mv.Message(), depth+1)
			return err == nil
		})
		return err
	case fd.IsList():
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return nil
		}
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			if err := a.walk(l.Get(i).Message(), depth+1); err != nil {
				return err
			}
		}
		return nil
	case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
		return a.walk(v.Message(), depth+1)
	}
	return nil
}

func (a *Allowlist) walkAny(m protoreflect.Message, depth int) error {
	anyMsg, ok := m.Interface().(*anypb.Any)
	if !ok {
		// A dynamic Any: rebuild a concrete one from its fields.
		anyMsg = &anypb.Any{}
		proto.Merge(anyMsg, m.Interface())
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(anyMsg.GetTypeUrl())
	if err != nil {
		return &UnsupportedTypeError{TypeURL: anyMsg.GetTypeUrl()}
	}
	if !a.anyTypes[mt.Descriptor().FullName()] {
		return &UnsupportedTypeError{TypeURL: anyMsg.GetTypeUrl()}
	}
	inner := mt.New()
	if err := proto.Unmarshal(anyMsg.GetValue(), inner.Interface()); err != nil {
		return fmt.Errorf("decoding %s: %w", anyMsg.GetTypeUrl(), err)
	}
	return a.walk(inner, depth+1)
}
