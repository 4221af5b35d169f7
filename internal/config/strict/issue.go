// Package strict checks a YAML document, as parsed by gopkg.in/yaml.v3, against a Go
// type (by json tags) or a protobuf message (by descriptor) before anything decodes it.
// It exists because decoders stop at the first problem and forget where it was: this
// walker reports every unknown field, wrong type and out-of-range value with its line,
// column and field path, and records where every field was so later semantic checks can
// point at a line too.
package strict

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Issue is one problem found in a document.
type Issue struct {
	Line, Column int
	// Path is the field path, e.g. spec.http[0].route[1].weight; empty for the document.
	Path string
	Msg  string
	// Code, when set, is the `skein analyze` code of this kind of mistake (SKnnnn),
	// for the reference and semantic checks a tool reports under their own codes.
	Code string
}

func (i Issue) String() string {
	return fmt.Sprintf("%d:%d: %s: %s", i.Line, i.Column, i.Path, i.Msg)
}

// Pos is a position in the source.
type Pos struct{ Line, Column int }

// Positions maps field paths to where their values are written.
type Positions map[string]Pos

// Lookup returns the position of path, or of its nearest written ancestor (a missing
// field is reported where its parent is).
func (p Positions) Lookup(path string) Pos {
	for {
		if pos, ok := p[path]; ok {
			return pos
		}
		if path == "" {
			return Pos{}
		}
		cut := max(strings.LastIndexByte(path, '.'), strings.LastIndexByte(path, '['))
		if cut < 0 {
			cut = 0
		}
		path = path[:cut]
	}
}

// Field appends a field name to a path.
func Field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// Index appends a list index to a path.
func Index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// Key appends a map key to a path: .key when it is a plain word, ["key"] otherwise.
func Key(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			plain = false
			break
		}
	}
	if plain {
		return Field(path, key)
	}
	return path + "[" + strconv.Quote(key) + "]"
}

// describe names a YAML value's type for messages, e.g. `string "abc"`.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	switch n.Tag {
	case "!!str":
		return "string " + strconv.Quote(v)
	case "!!int":
		return "integer " + v
	case "!!float":
		return "number " + v
	case "!!bool":
		return "boolean " + v
	case "!!null":
		return "null"
	}
	return n.Tag + " " + strconv.Quote(v)
}
