package strict

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Prepare rejects the YAML features that make a document mean something other than
// what it shows (anchors, aliases, merge keys, custom tags) and duplicate or non-scalar
// mapping keys. Call it before Check and ToJSON, which assume a clean tree.
func Prepare(n *yaml.Node) []Issue {
	var issues []Issue
	prepare(n, "", &issues)
	return issues
}

func prepare(n *yaml.Node, path string, issues *[]Issue) {
	add := func(at *yaml.Node, p, format string, args ...any) {
		*issues = append(*issues, Issue{Line: at.Line, Column: at.Column, Path: p, Msg: fmt.Sprintf(format, args...)})
	}
	if n.Anchor != "" {
		add(n, path, "YAML anchors (&%s) are not supported: write the value out", n.Anchor)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			prepare(c, path, issues)
		}
	case yaml.AliasNode:
		add(n, path, "YAML aliases (*%s) are not supported: write the value out", n.Value)
	case yaml.SequenceNode:
		if n.Tag != "!!seq" {
			add(n, path, "custom YAML tag %s is not supported", n.Tag)
		}
		for i, c := range n.Content {
			prepare(c, Index(path, i), issues)
		}
	case yaml.MappingNode:
		if n.Tag != "!!map" {
			add(n, path, "custom YAML tag %s is not supported", n.Tag)
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" || k.Tag == "!!null" {
				if k.Tag == "!!merge" {
					add(k, path, "YAML merge keys (<<) are not supported: write the fields out")
				} else {
					add(k, path, "mapping key must be a string, got %s", describe(k))
				}
				continue
			}
			if first, dup := seen[k.Value]; dup {
				add(k, Key(path, k.Value), "duplicate key %q (first at line %d)", k.Value, first)
				continue
			}
			seen[k.Value] = k.Line
			prepare(v, Key(path, k.Value), issues)
		}
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str", "!!int", "!!float", "!!bool", "!!null", "!!timestamp", "!!binary":
		default:
			add(n, path, "custom YAML tag %s is not supported", n.Tag)
		}
	}
}

// ToJSON converts a prepared YAML node to JSON, following YAML 1.2 as yaml.v3 resolves
// it (so `yes` stays a string), which is what Check assumed.
func ToJSON(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	if err := writeJSON(&b, n); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeJSON(b *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			b.WriteString("null")
			return nil
		}
		return writeJSON(b, n.Content[0])
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(b, c); err != nil {
				return err
			}
		}
		b.WriteByte(']')
		return nil
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, n.Content[i].Value)
			b.WriteByte(':')
			if err := writeJSON(b, n.Content[i+1]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
		return nil
	case yaml.ScalarNode:
		return writeScalar(b, n)
	}
	return fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

func writeScalar(b *bytes.Buffer, n *yaml.Node) error {
	switch n.Tag {
	case "!!null":
		b.WriteString("null")
	case "!!bool":
		var v bool
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		b.WriteString(strconv.FormatBool(v))
	case "!!int":
		if v, ok := intValue(n); ok {
			b.WriteString(strconv.FormatInt(v, 10))
			return nil
		}
		var u uint64
		if err := n.Decode(&u); err != nil {
			return fmt.Errorf("line %d: integer %s out of range", n.Line, n.Value)
		}
		b.WriteString(strconv.FormatUint(u, 10))
	case "!!float":
		v, ok := floatValue(n)
		if !ok {
			return fmt.Errorf("line %d: number %s cannot be represented in JSON", n.Line, n.Value)
		}
		out, err := json.Marshal(v)
		if err != nil {
			return err
		}
		b.Write(out)
	default:
		writeString(b, n.Value)
	}
	return nil
}

func writeString(b *bytes.Buffer, s string) {
	out, _ := json.Marshal(s) // marshalling a string cannot fail
	b.Write(out)
}

func intValue(n *yaml.Node) (int64, bool) {
	var v int64
	if n.Tag != "!!int" || n.Decode(&v) != nil {
		return 0, false
	}
	return v, true
}

func floatValue(n *yaml.Node) (float64, bool) {
	var v float64
	if (n.Tag != "!!float" && n.Tag != "!!int") || n.Decode(&v) != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}
