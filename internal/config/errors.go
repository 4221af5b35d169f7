package config

import (
	"fmt"
	"strings"
)

// Error is one problem in the configuration, pointing at the file, line and field.
type Error struct {
	File         string
	Line, Column int
	// Field is the field path inside the object, e.g. spec.http[0].route[1].weight.
	Field string
	// Kind and Name ("namespace/name") identify the object, when known.
	Kind, Name string
	Msg        string
	// Code is the `skein analyze` code of the problem when it has one (strict.Issue.Code).
	Code string
}

// Error formats as "file.yaml:12:5: VirtualService default/catalog: spec.http[0].route[1].weight: msg",
// leaving out the parts that are not known.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Kind != "" {
		b.WriteString(e.Kind)
		if e.Name != "" {
			b.WriteString(" " + e.Name)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a load, in file and document order.
type ErrorList []*Error

// Error joins the errors with newlines.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find an individual *Error.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}
