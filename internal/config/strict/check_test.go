package strict

import (
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type sample struct {
	Name  string             `json:"name"`
	Count *int32             `json:"count,omitempty"`
	Port  intstr.IntOrString `json:"port"`
	Tags  map[string]string  `json:"tags"`
	List  []uint8s           `json:"list"`
	Flag  bool               `json:"flag"`
}

type uint8s struct {
	N uint8 `json:"n"`
}

func TestCheckGoType(t *testing.T) {
	tests := []struct {
		name, input string
		want        []Issue
	}{
		{"valid", "name: a\ncount: 3\nport: http\ntags: {a: b}\nlist: [{n: 255}]\nflag: true\n", nil},
		{"null leaves unset", "name: null\ncount:\n", nil},
		{"wrong types", "name: 1\ncount: x\nport: [1]\ntags: {a: 1}\nlist: {}\nflag: yes\n", []Issue{
			{Line: 1, Column: 7, Path: "name", Msg: `expected a string, got integer 1 (quote it: "1")`},
			{Line: 2, Column: 8, Path: "count", Msg: `expected an integer, got string "x"`},
			{Line: 3, Column: 7, Path: "port", Msg: "expected a port number or name, got a list"},
			{Line: 4, Column: 11, Path: "tags.a", Msg: `expected a string, got integer 1 (quote it: "1")`},
			{Line: 5, Column: 7, Path: "list", Msg: "expected a list, got a mapping"},
			{Line: 6, Column: 7, Path: "flag", Msg: `expected true or false, got string "yes"`},
		}},
		{"range", "count: 3000000000\nlist: [{n: 256}, {n: -1}]\n", []Issue{
			{Line: 1, Column: 8, Path: "count", Msg: "integer 3000000000 out of range [-2147483648, 2147483647]"},
			{Line: 2, Column: 12, Path: "list[0].n", Msg: "integer 256 out of range [0, 255]"},
			{Line: 2, Column: 22, Path: "list[1].n", Msg: "integer -1 out of range [0, 255]"},
		}},
		{"unknown", "nmae: a\n", []Issue{{Line: 1, Column: 1, Path: "nmae", Msg: `unknown field "nmae" (did you mean "name"?)`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(tt.input), &doc); err != nil {
				t.Fatal(err)
			}
			if issues := Prepare(&doc); len(issues) > 0 {
				t.Fatalf("Prepare: %v", issues)
			}
			_, got := Check(&doc, reflect.TypeFor[sample](), Options{})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("issues (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPositionsLookup(t *testing.T) {
	p := Positions{"": {1, 1}, "spec": {2, 3}, "spec.http[0]": {4, 5}}
	for path, want := range map[string]Pos{
		"spec.http[0].route[1].weight": {4, 5},
		"spec.tcp":                     {2, 3},
		`spec["a.b"].c`:                {2, 3},
		"other":                        {1, 1},
	} {
		if got := p.Lookup(path); got != want {
			t.Errorf("Lookup(%q) = %v, want %v", path, got, want)
		}
	}
}
