package model

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func prefix(p string) *StringMatch { return &StringMatch{Kind: MatchPrefix, Value: p} }
func exact(p string) *StringMatch  { return &StringMatch{Kind: MatchExact, Value: p} }

func TestResolveDelegates(t *testing.T) {
	leaf := NamespacedName{Namespace: "default", Name: "leaf"}
	rootHeaders := &Headers{Response: HeaderOps{Set: map[string]string{"x-root": "yes"}}}
	tests := []struct {
		name      string
		root, sub []HTTPMatch
		want      []HTTPMatch // nil: the delegate rule is dropped
	}{
		{name: "no root match", sub: []HTTPMatch{{URI: prefix("/a")}}, want: []HTTPMatch{{URI: prefix("/a")}}},
		{name: "no delegate match", root: []HTTPMatch{{URI: prefix("/a")}}, want: []HTTPMatch{{URI: prefix("/a")}}},
		{name: "narrower prefix", root: []HTTPMatch{{URI: prefix("/a")}}, sub: []HTTPMatch{{URI: prefix("/a/b")}}, want: []HTTPMatch{{URI: prefix("/a/b")}}},
		{name: "exact under prefix", root: []HTTPMatch{{URI: prefix("/a")}}, sub: []HTTPMatch{{URI: exact("/a/x")}}, want: []HTTPMatch{{URI: exact("/a/x")}}},
		{name: "prefix outside", root: []HTTPMatch{{URI: prefix("/a")}}, sub: []HTTPMatch{{URI: prefix("/b")}}},
		{name: "prefix under exact", root: []HTTPMatch{{URI: exact("/a")}}, sub: []HTTPMatch{{URI: prefix("/a")}}},
		{name: "regex conflicts", root: []HTTPMatch{{URI: prefix("/a")}}, sub: []HTTPMatch{{URI: &StringMatch{Kind: MatchRegex, Value: "/a.*"}}}},
		{name: "root fields fill in", root: []HTTPMatch{{Name: "r", URI: prefix("/a"), Method: exact("GET"), Headers: map[string]StringMatch{"x": *exact("1")}, Port: 80}},
			sub:  []HTTPMatch{{Name: "s", Headers: map[string]StringMatch{"y": *exact("2")}}},
			want: []HTTPMatch{{Name: "r-s", URI: prefix("/a"), Method: exact("GET"), Headers: map[string]StringMatch{"x": *exact("1"), "y": *exact("2")}, Port: 80}}},
		{name: "each root match that fits", root: []HTTPMatch{{URI: prefix("/a")}, {URI: prefix("/a/b")}}, sub: []HTTPMatch{{URI: prefix("/a/b/c")}},
			want: []HTTPMatch{{URI: prefix("/a/b/c")}, {URI: prefix("/a/b/c")}}},
		{name: "ignoreUriCase must agree", root: []HTTPMatch{{URI: prefix("/a"), IgnoreURICase: true}}, sub: []HTTPMatch{{URI: prefix("/a")}}},
		{name: "ports must agree", root: []HTTPMatch{{Port: 80}}, sub: []HTTPMatch{{Port: 81}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := &VirtualService{NamespacedName: NamespacedName{Namespace: "default", Name: "root"}, Hosts: []string{"web"}, HTTP: []HTTPRoute{
				{Name: "team", Matches: tc.root, Delegate: &leaf, Headers: rootHeaders, Timeout: time.Second},
				{Name: "rest", Destinations: []RouteDestination{{Host: "web", Weight: 100}}},
			}}
			del := &VirtualService{NamespacedName: leaf, HTTP: []HTTPRoute{
				{Name: "sub", Matches: tc.sub, Destinations: []RouteDestination{{Host: "web", Subset: "v2", Weight: 100}}},
			}}
			got := ResolveDelegates([]*VirtualService{root, del})
			if len(got) != 1 || got[0].Name != "root" {
				t.Fatalf("got %d VirtualServices, want the root only", len(got))
			}
			if tc.want == nil {
				if len(got[0].HTTP) != 1 || got[0].HTTP[0].Name != "rest" {
					t.Fatalf("want the delegate rule dropped, got %+v", got[0].HTTP)
				}
				return
			}
			if len(got[0].HTTP) != 2 {
				t.Fatalf("want 2 rules, got %+v", got[0].HTTP)
			}
			r := got[0].HTTP[0]
			if r.Name != "team-sub" || r.Delegate != nil || r.Headers != rootHeaders || r.Timeout != time.Second || r.Destinations[0].Subset != "v2" {
				t.Errorf("merged rule %+v: want name team-sub, the root's headers and timeout, the delegate's destination", r)
			}
			if diff := cmp.Diff(tc.want, r.Matches); diff != "" {
				t.Errorf("matches (-want +got):\n%s", diff)
			}
			if root.HTTP[0].Delegate == nil {
				t.Error("the input VirtualService was modified")
			}
		})
	}
}

func TestResolveDelegatesMissing(t *testing.T) {
	root := &VirtualService{Hosts: []string{"web"}, HTTP: []HTTPRoute{{Delegate: &NamespacedName{Name: "gone"}}}}
	got := ResolveDelegates([]*VirtualService{root})
	if len(got) != 1 || len(got[0].HTTP) != 0 {
		t.Errorf("a missing delegate drops its rule: %+v", got)
	}
}
