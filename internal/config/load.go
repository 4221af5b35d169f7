// Package config loads skein's configuration files — Kubernetes Services, skein
// Workloads, Istio VirtualServices and DestinationRules in multi-document YAML — into
// one immutable model.Mesh. Loading is strict: unknown fields, wrong types, missing
// required fields, duplicates, dangling references and Istio features skein does not
// implement yet are all errors naming the file, line and field path, and every error
// of a load is reported, not just the first.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/util/validation"

	"skein.dev/skein/internal/config/istio"
	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// Load reads files and folders (recursively; *.yaml and *.yml; hidden files and
// folders skipped) and returns the mesh, or an ErrorList with every problem found.
// Objects and errors come in a deterministic order: by file, then document.
func Load(paths ...string) (*model.Mesh, error) {
	l := newLoader()
	seen := map[string]bool{}
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			l.errs = append(l.errs, &Error{File: p, Msg: err.Error()})
			continue
		}
		for _, f := range files {
			if seen[filepath.Clean(f)] {
				continue
			}
			seen[filepath.Clean(f)] = true
			data, err := os.ReadFile(f)
			if err != nil {
				l.errs = append(l.errs, &Error{File: f, Msg: err.Error()})
				continue
			}
			l.file(f, data)
		}
	}
	return l.finish()
}

// LoadBytes is Load for one in-memory file; name is used in errors.
func LoadBytes(name string, data []byte) (*model.Mesh, error) {
	l := newLoader()
	l.file(name, data)
	return l.finish()
}

// expand lists the YAML files of a path: the file itself, or a folder's *.yaml and
// *.yml files in lexical order, skipping hidden files and folders.
func expand(root string) ([]string, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{root}, nil
	}
	var files []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

// object is one loaded document.
type object struct {
	kind   string
	nn     model.NamespacedName
	pos    strict.Positions
	src    model.Source
	failed bool   // had errors: left out of the mesh and of reference checks
	host   string // spec.host of a DestinationRule as written, even when it failed
	value  any    // *model.Service, *model.Workload, *model.VirtualService, *model.DestinationRule
	spec   any    // the Istio spec, for reference checks
}

func (o *object) name() string {
	if o.nn.Name == "" {
		return ""
	}
	return o.nn.Namespace + "/" + o.nn.Name
}

type loader struct {
	suffix    string
	errs      ErrorList
	fileOrder map[string]int
	objects   []*object
}

func newLoader() *loader {
	return &loader{suffix: model.DefaultDomainSuffix, fileOrder: map[string]int{}}
}

// report adds issues of an object, finding lines for those that have only a path.
func (l *loader) report(o *object, issues []strict.Issue) {
	for _, is := range issues {
		if is.Line == 0 {
			p := o.pos.Lookup(is.Path)
			is.Line, is.Column = p.Line, p.Column
		}
		l.errs = append(l.errs, &Error{File: o.src.File, Line: is.Line, Column: is.Column, Field: is.Path, Kind: o.kind, Name: o.name(), Msg: is.Msg, Code: is.Code})
	}
	if len(issues) > 0 {
		o.failed = true
	}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (l *loader) file(name string, data []byte) {
	if _, ok := l.fileOrder[name]; !ok {
		l.fileOrder[name] = len(l.fileOrder)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := decodeNode(dec, &doc)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			e := &Error{File: name, Msg: err.Error()}
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				e.Line, _ = strconv.Atoi(m[1])
				e.Column, e.Msg = 1, "invalid YAML: "+m[2]
			}
			l.errs = append(l.errs, e)
			return // the parser cannot resynchronise after a syntax error
		}
		l.document(name, &doc)
	}
}

// decodeNode parses one document, turning a parser panic into an error: the loader
// reads user input and must never crash on it.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid YAML: %v", r)
		}
	}()
	return dec.Decode(n)
}

// scalarAt returns the string scalar at a path of mapping keys, or nil.
func scalarAt(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return nil
	}
	return n
}

func (l *loader) document(file string, doc *yaml.Node) {
	if len(doc.Content) == 0 {
		return
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return // an empty document, e.g. after a trailing ---
	}
	o := &object{src: model.Source{File: file, Line: root.Line}, pos: strict.Positions{"": {Line: root.Line, Column: root.Column}}}
	if root.Kind != yaml.MappingNode {
		l.report(o, []strict.Issue{{Msg: "a document must be a mapping with apiVersion and kind"}})
		return
	}
	apiVersion, kind := scalarAt(root, "apiVersion"), scalarAt(root, "kind")
	if n := scalarAt(root, "metadata", "name"); n != nil {
		o.nn.Name = n.Value
	}
	o.nn.Namespace = "default"
	if n := scalarAt(root, "metadata", "namespace"); n != nil && n.Value != "" {
		o.nn.Namespace = n.Value
	}
	if h := scalarAt(root, "spec", "host"); h != nil {
		o.host = h.Value
	}
	if issues := strict.Prepare(doc); len(issues) > 0 {
		l.report(o, issues)
		return
	}
	if apiVersion == nil || kind == nil {
		l.report(o, []strict.Issue{{Msg: "apiVersion and kind are required strings"}})
		return
	}
	k := findKind(apiVersion.Value, kind.Value)
	if k == nil {
		l.report(o, []strict.Issue{{Line: kind.Line, Column: kind.Column, Path: "kind", Msg: fmt.Sprintf(
			"unsupported kind %q of apiVersion %q: skein reads v1 Service, %s", kind.Value, apiVersion.Value, supportedKinds)}})
		return
	}
	o.kind = k.name
	l.objects = append(l.objects, o)
	pos, issues := strict.Check(doc, k.checkType, strict.Options{AllowField: k.allowField})
	o.pos = pos
	issues = append(issues, checkMetadata(root)...)
	if len(issues) > 0 {
		l.report(o, issues)
		return
	}
	data, err := strict.ToJSON(doc)
	if err != nil {
		l.report(o, []strict.Issue{{Msg: err.Error()}})
		return
	}
	value, spec, issues := k.build(data, o.nn, l.suffix)
	o.value, o.spec = value, spec
	l.report(o, issues)
}

// checkMetadata checks what every kind needs: a valid name, and a valid namespace
// when one is given.
func checkMetadata(root *yaml.Node) []strict.Issue {
	var issues []strict.Issue
	name := scalarAt(root, "metadata", "name")
	switch {
	case name == nil || name.Value == "":
		issues = append(issues, strict.Issue{Path: "metadata.name", Msg: "name is required"})
	default:
		if msgs := validation.IsDNS1123Subdomain(name.Value); len(msgs) > 0 {
			issues = append(issues, strict.Issue{Line: name.Line, Column: name.Column, Path: "metadata.name", Msg: fmt.Sprintf("invalid name %q: %s", name.Value, msgs[0])})
		}
	}
	if ns := scalarAt(root, "metadata", "namespace"); ns != nil && ns.Value != "" {
		if msgs := validation.IsDNS1123Label(ns.Value); len(msgs) > 0 {
			issues = append(issues, strict.Issue{Line: ns.Line, Column: ns.Column, Path: "metadata.namespace", Msg: fmt.Sprintf("invalid namespace %q: %s", ns.Value, msgs[0])})
		}
	}
	return issues
}

// finish checks what needs the whole load (duplicates, references) and builds the mesh.
func (l *loader) finish() (*model.Mesh, error) {
	cat := &istio.Catalog{
		Suffix:            l.suffix,
		Services:          map[string]*model.Service{},
		Subsets:           map[string][]string{},
		UncheckedServices: map[string]bool{},
		UncheckedSubsets:  map[string]bool{},
	}
	first := map[string]*object{}
	ruleFor := map[string]*object{}
	defaultSidecar := map[string]*object{} // namespace -> its Sidecar without selector
	entryHost := map[string]*object{}      // ServiceEntry host -> its object
	for _, o := range l.objects {
		if o.nn.Name != "" {
			key := o.kind + "/" + o.name()
			if prev, dup := first[key]; dup {
				l.report(o, []strict.Issue{{Path: "metadata.name", Msg: fmt.Sprintf("duplicate %s %s, first defined at %s", o.kind, o.name(), prev.src)}})
				continue
			}
			first[key] = o
		}
		switch o.kind {
		case kindService:
			fqdn := o.nn.Name + "." + o.nn.Namespace + "." + l.suffix
			if svc, ok := o.value.(*model.Service); ok && !o.failed {
				cat.Services[fqdn] = svc
			} else if o.nn.Name != "" {
				cat.UncheckedServices[fqdn] = true
			}
		case kindServiceEntry:
			// Each host joins the registry; the first definition of a host wins, as
			// for Services (Istio merges ServiceEntries of one host: not yet).
			svcs, _ := o.value.([]*model.Service)
			for _, svc := range svcs {
				if o.failed {
					cat.UncheckedServices[svc.Host] = true
					continue
				}
				if prev, dup := entryHost[svc.Host]; dup {
					l.report(o, []strict.Issue{{Path: "spec.hosts", Msg: fmt.Sprintf("host %q is already declared by ServiceEntry %s at %s", svc.Host, prev.name(), prev.src)}})
					continue
				}
				entryHost[svc.Host] = o
				cat.Services[svc.Host] = svc
			}
		case kindSidecar:
			l.checkSidecarDefault(o, defaultSidecar)
		case kindVirtualService:
			vs, _ := o.value.(*model.VirtualService)
			if o.failed {
				vs = nil
			}
			cat.AddVirtualService(o.nn.Namespace, o.nn.Name, vs)
		case kindDestinationRule:
			host := istio.ResolveHost(o.host, o.nn.Namespace, l.suffix)
			dr, ok := o.value.(*model.DestinationRule)
			if !ok || o.failed {
				cat.UncheckedSubsets[host] = true
				continue
			}
			if prev, dup := ruleFor[host]; dup {
				l.report(o, []strict.Issue{{Path: "spec.host", Msg: fmt.Sprintf("host %q already has DestinationRule %s at %s: merge them into one", host, prev.name(), prev.src)}})
				continue
			}
			ruleFor[host] = o
			names := []string{}
			for _, s := range dr.Subsets {
				names = append(names, s.Name)
			}
			cat.Subsets[host] = names
		}
	}
	for _, o := range l.objects {
		if o.failed {
			continue
		}
		if k := findKindByName(o.kind); k != nil && k.references != nil {
			l.report(o, k.references(o.nn.Namespace, o.spec, cat))
		}
	}
	if len(l.errs) > 0 {
		slices.SortStableFunc(l.errs, func(a, b *Error) int {
			if c := l.fileOrder[a.File] - l.fileOrder[b.File]; c != 0 {
				return c
			}
			if c := a.Line - b.Line; c != 0 {
				return c
			}
			return a.Column - b.Column
		})
		return nil, l.errs
	}
	mesh := &model.Mesh{DomainSuffix: l.suffix}
	for _, o := range l.objects {
		switch v := o.value.(type) {
		case *model.Service:
			v.Source = o.src
			mesh.Services = append(mesh.Services, v)
		case []*model.Service: // a ServiceEntry's hosts
			for _, svc := range v {
				svc.Source = o.src
				mesh.Services = append(mesh.Services, svc)
			}
		case *model.Workload:
			v.Source = o.src
			mesh.Workloads = append(mesh.Workloads, v)
		case *model.VirtualService:
			v.Source = o.src
			mesh.VirtualServices = append(mesh.VirtualServices, v)
		case *model.DestinationRule:
			v.Source = o.src
			mesh.DestinationRules = append(mesh.DestinationRules, v)
		case *model.AuthorizationPolicy:
			v.Source = o.src
			mesh.AuthorizationPolicies = append(mesh.AuthorizationPolicies, v)
		case *model.RequestAuthentication:
			v.Source = o.src
			mesh.RequestAuthentications = append(mesh.RequestAuthentications, v)
		case *model.Sidecar:
			v.Source = o.src
			mesh.Sidecars = append(mesh.Sidecars, v)
		case *model.PeerAuthentication:
			v.Source = o.src
			mesh.PeerAuthentications = append(mesh.PeerAuthentications, v)
		case *model.Telemetry:
			v.Source = o.src
			mesh.Telemetries = append(mesh.Telemetries, v)
		case *model.WorkloadEntry:
			v.Source = o.src
			mesh.WorkloadEntries = append(mesh.WorkloadEntries, v)
		}
	}
	resolveEntryHosts(mesh, cat)
	mesh.VirtualServices = model.ResolveDelegates(mesh.VirtualServices)
	l.resolveGateways(mesh, cat)
	l.bindIstioGateways(mesh, cat)
	if len(l.errs) > 0 {
		return nil, l.errs
	}
	if err := l.checkGatewayProxies(mesh); err != nil {
		return nil, err
	}
	model.AllocateVIPs(mesh.Services)
	return mesh, nil
}
