package strict

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Options tunes Check.
type Options struct {
	// AllowField reports whether skein supports a protobuf field. A field that is set
	// but not allowed is an error ("not supported yet"), so no setting is silently
	// ignored. Nil allows every field.
	AllowField func(protoreflect.FieldDescriptor) bool
}

// Check walks a prepared document against t: a Go type described by its json tags,
// whose fields may be protobuf messages (checked against their descriptors, accepting
// json and proto field names as protojson does). It returns the position of every
// value it saw and every problem it found. Duration strings in protobuf messages are
// normalised in place to the seconds form protojson reads ("100ms" becomes "0.100000000s").
func Check(n *yaml.Node, t reflect.Type, opts Options) (Positions, []Issue) {
	c := &checker{opts: opts, pos: Positions{}}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	c.value(n, t, "")
	return c.pos, c.issues
}

type checker struct {
	opts   Options
	pos    Positions
	issues []Issue
}

func (c *checker) errorf(n *yaml.Node, path, format string, args ...any) {
	c.issues = append(c.issues, Issue{Line: n.Line, Column: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) record(n *yaml.Node, path string) {
	if _, ok := c.pos[path]; !ok {
		c.pos[path] = Pos{Line: n.Line, Column: n.Column}
	}
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

var (
	protoMessageType  = reflect.TypeFor[proto.Message]()
	jsonUnmarshalType = reflect.TypeFor[json.Unmarshaler]()
	intOrStringType   = reflect.TypeFor[intstr.IntOrString]()
)

func (c *checker) value(n *yaml.Node, t reflect.Type, path string) {
	c.record(n, path)
	if isNull(n) {
		return // null leaves a field unset, as the JSON decoders do
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	pt := reflect.PointerTo(t)
	switch {
	case pt.Implements(protoMessageType):
		md := reflect.New(t).Interface().(proto.Message).ProtoReflect().Descriptor()
		c.message(n, md, path)
		return
	case t == intOrStringType:
		if v, ok := intValue(n); ok && v >= 0 && v <= math.MaxInt32 {
			return
		}
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
			return
		}
		c.errorf(n, path, "expected a port number or name, got %s", describe(n))
		return
	case pt.Implements(jsonUnmarshalType):
		// Types with their own JSON form (times, quantities): let them judge the value.
		data, err := ToJSON(n)
		if err == nil {
			err = json.Unmarshal(data, reflect.New(t).Interface())
		}
		if err != nil {
			c.errorf(n, path, "invalid value: %v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Interface:
	case reflect.Struct:
		c.structFields(n, t, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.errorf(n, path, "expected a mapping, got %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			c.value(n.Content[i+1], t.Elem(), Key(path, k))
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			c.scalar(n, "!!str", "a base64 string", path)
			return
		}
		if n.Kind != yaml.SequenceNode {
			c.errorf(n, path, "expected a list, got %s", describe(n))
			return
		}
		for i, e := range n.Content {
			c.value(e, t.Elem(), Index(path, i))
		}
	case reflect.String:
		c.scalar(n, "!!str", "a string", path)
	case reflect.Bool:
		c.scalar(n, "!!bool", "true or false", path)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		c.integer(n, path, t.Bits(), true)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		c.integer(n, path, t.Bits(), false)
	case reflect.Float32, reflect.Float64:
		if _, ok := floatValue(n); !ok {
			c.errorf(n, path, "expected a number, got %s", describe(n))
		}
	default:
		c.errorf(n, path, "internal: cannot check Go type %s", t)
	}
}

// scalar checks a scalar of the given YAML tag.
func (c *checker) scalar(n *yaml.Node, tag, want, path string) bool {
	if n.Kind == yaml.ScalarNode && n.Tag == tag {
		return true
	}
	hint := ""
	if tag == "!!str" && n.Kind == yaml.ScalarNode {
		hint = fmt.Sprintf(" (quote it: %q)", n.Value)
	}
	c.errorf(n, path, "expected %s, got %s%s", want, describe(n), hint)
	return false
}

func (c *checker) integer(n *yaml.Node, path string, bits int, signed bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		c.errorf(n, path, "expected an integer, got %s", describe(n))
		return
	}
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if bits < 64 {
		hi = 1<<(bits-1) - 1
		lo = -hi - 1
		if !signed {
			hi = 1<<bits - 1
		}
	}
	if !signed {
		lo = 0
	}
	v, ok := intValue(n)
	if !ok {
		var u uint64
		if !signed && bits == 64 && n.Decode(&u) == nil {
			return
		}
		c.errorf(n, path, "integer %s out of range [%d, %d]", n.Value, lo, hi)
		return
	}
	if v < lo || v > hi {
		c.errorf(n, path, "integer %s out of range [%d, %d]", n.Value, lo, hi)
	}
}

// goField is one JSON field of a Go struct.
type goField struct {
	name string
	typ  reflect.Type
}

func jsonFields(t reflect.Type, out map[string]goField) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				jsonFields(ft, out)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = goField{name: name, typ: f.Type}
	}
}

func (c *checker) structFields(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.errorf(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	fields := map[string]goField{}
	jsonFields(t, fields)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		f, ok := fields[k.Value]
		if !ok {
			c.errorf(k, Key(path, k.Value), "unknown field %q%s", k.Value, suggest(k.Value, keys(fields)))
			continue
		}
		c.value(v, f.typ, Field(path, f.name))
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// message checks a protobuf message written as protojson would read it.
func (c *checker) message(n *yaml.Node, md protoreflect.MessageDescriptor, path string) {
	switch md.FullName() {
	case "google.protobuf.Duration":
		c.duration(n, path)
		return
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any":
		return // free-form; protojson judges it
	case "google.protobuf.Timestamp", "google.protobuf.FieldMask":
		c.scalar(n, "!!str", "a string", path)
		return
	case "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
		"google.protobuf.Int32Value", "google.protobuf.Int64Value", "google.protobuf.UInt32Value",
		"google.protobuf.UInt64Value", "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		c.protoScalar(n, md.Fields().ByName("value"), path)
		return
	}
	if n.Kind != yaml.MappingNode {
		c.errorf(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	seen := map[protoreflect.FieldNumber]string{}
	oneofs := map[protoreflect.FullName]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		fd := md.Fields().ByJSONName(k.Value)
		if fd == nil {
			fd = md.Fields().ByTextName(k.Value)
		}
		if fd == nil {
			c.errorf(k, Key(path, k.Value), "unknown field %q%s", k.Value, suggest(k.Value, jsonNames(md)))
			continue
		}
		fpath := Field(path, fd.JSONName())
		if first, dup := seen[fd.Number()]; dup {
			c.errorf(k, fpath, "field set twice (as %q and %q)", first, k.Value)
			continue
		}
		seen[fd.Number()] = k.Value
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && !isNull(v) {
			if other, dup := oneofs[od.FullName()]; dup {
				c.errorf(k, fpath, "only one of %s may be set (%q is set too)", oneofNames(od), other)
				continue
			}
			oneofs[od.FullName()] = k.Value
		}
		if c.opts.AllowField != nil && !c.opts.AllowField(fd) {
			c.record(v, fpath)
			c.errorf(k, fpath, "not supported yet by skein")
			continue
		}
		c.protoField(v, fd, fpath)
	}
}

func (c *checker) protoField(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) {
	c.record(n, path)
	if isNull(n) {
		return
	}
	switch {
	case fd.IsList():
		if n.Kind != yaml.SequenceNode {
			c.errorf(n, path, "expected a list, got %s", describe(n))
			return
		}
		for i, e := range n.Content {
			c.protoSingular(e, fd, Index(path, i))
		}
	case fd.IsMap():
		if n.Kind != yaml.MappingNode {
			c.errorf(n, path, "expected a mapping, got %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if fd.MapKey().Kind() != protoreflect.StringKind {
				c.protoScalar(k, fd.MapKey(), Key(path, k.Value))
			}
			c.protoSingular(n.Content[i+1], fd.MapValue(), Key(path, k.Value))
		}
	default:
		c.protoSingular(n, fd, path)
	}
}

func (c *checker) protoSingular(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) {
	c.record(n, path)
	if isNull(n) {
		return
	}
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		c.message(n, fd.Message(), path)
		return
	}
	c.protoScalar(n, fd, path)
}

func (c *checker) protoScalar(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		c.scalar(n, "!!bool", "true or false", path)
	case protoreflect.StringKind:
		c.scalar(n, "!!str", "a string", path)
	case protoreflect.BytesKind:
		c.scalar(n, "!!str", "a base64 string", path)
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && values.ByName(protoreflect.Name(n.Value)) != nil {
			return
		}
		names := make([]string, values.Len())
		for i := range names {
			names[i] = string(values.Get(i).Name())
		}
		c.errorf(n, path, "expected one of %s, got %s", strings.Join(names, ", "), describe(n))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		c.integer(n, path, 32, true)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		c.integer(n, path, 64, true)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		c.integer(n, path, 32, false)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		c.integer(n, path, 64, false)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if _, ok := floatValue(n); !ok {
			c.errorf(n, path, "expected a number, got %s", describe(n))
		}
	default:
		c.errorf(n, path, "internal: cannot check protobuf kind %s", fd.Kind())
	}
}

// duration accepts Go duration strings ("1.5s", "100ms", "1m") and rewrites them to
// the seconds form protojson requires.
func (c *checker) duration(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		c.errorf(n, path, "expected a duration such as \"1.5s\", got %s", describe(n))
		return
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		c.errorf(n, path, "invalid duration %q: use a number with a unit, e.g. \"1.5s\" or \"100ms\"", n.Value)
		return
	}
	if d < 0 {
		c.errorf(n, path, "duration %q must not be negative", n.Value)
		return
	}
	n.Value = strconv.FormatInt(int64(d/time.Second), 10) + "." + fmt.Sprintf("%09d", int64(d%time.Second)) + "s"
}

func jsonNames(md protoreflect.MessageDescriptor) []string {
	out := make([]string, md.Fields().Len())
	for i := range out {
		out[i] = md.Fields().Get(i).JSONName()
	}
	return out
}

func oneofNames(od protoreflect.OneofDescriptor) string {
	names := make([]string, od.Fields().Len())
	for i := range names {
		names[i] = od.Fields().Get(i).JSONName()
	}
	return strings.Join(names, ", ")
}

// suggest returns ` (did you mean "x"?)` for the closest known name, if one is close.
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
		if d := distance(strings.ToLower(name), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein edit distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
