// Package analyze runs static checks over a folder of skein configuration, as
// `istioctl analyze` does: each finding has a code (SKnnnn), a severity, the file and
// line of the object it is about, a message and a hint to fix it.
//
// Adding a check is adding one file: a function with the Check signature registered
// from the file's init with register. The registry is filled once, at package
// initialisation, and only read afterwards.
package analyze

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"skein.dev/skein/internal/config"
	"skein.dev/skein/internal/model"
)

// Severity orders findings.
type Severity int

const (
	Info Severity = iota
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "Warning"
	case Error:
		return "Error"
	}
	return "Info"
}

// ParseSeverity reads Info, Warning or Error (any case).
func ParseSeverity(s string) (Severity, error) {
	for _, v := range []Severity{Info, Warning, Error} {
		if strings.EqualFold(s, v.String()) {
			return v, nil
		}
	}
	return 0, fmt.Errorf("severity %q: want Info, Warning or Error", s)
}

// Finding is one problem.
type Finding struct {
	Code     string       `json:"code"`
	Severity Severity     `json:"-"`
	Level    string       `json:"severity"`
	Source   model.Source `json:"source"`
	Kind     string       `json:"kind,omitempty"`
	Object   string       `json:"object,omitempty"` // namespace/name
	Message  string       `json:"message"`
	Hint     string       `json:"hint,omitempty"`
}

// Check looks at a loaded mesh and reports findings.
type Check struct {
	// Codes lists the codes the check reports, for documentation and tests.
	Codes []string
	Name  string
	Run   func(*model.Mesh) []Finding
}

var registry []Check

// register adds a check; call it from an init function only.
func register(c Check) { registry = append(registry, c) }

// Checks returns the registered checks.
func Checks() []Check { return append([]Check(nil), registry...) }

// CodeConfigError is reported for every error the config loader finds: nothing else
// runs on a folder that does not load.
const CodeConfigError = "SK0001"

// Run loads paths (files and folders, as `skein up` does) and runs every check.
func Run(paths ...string) []Finding {
	mesh, err := config.Load(paths...)
	if err != nil {
		return configFindings(err)
	}
	return Mesh(mesh)
}

// Mesh runs every check on an already loaded mesh.
func Mesh(mesh *model.Mesh) []Finding {
	var out []Finding
	for _, c := range registry {
		out = append(out, c.Run(mesh)...)
	}
	sortFindings(out)
	return out
}

func configFindings(err error) []Finding {
	var list config.ErrorList
	if !errors.As(err, &list) {
		return []Finding{{Code: CodeConfigError, Severity: Error, Level: "Error", Message: err.Error()}}
	}
	out := make([]Finding, 0, len(list))
	for _, e := range list {
		msg := e.Msg
		if e.Field != "" {
			msg = e.Field + ": " + msg
		}
		code, hint := CodeConfigError, "skein refuses this configuration; fix the field named"
		if h, ok := codedHints[e.Code]; ok {
			code, hint = e.Code, h
		}
		out = append(out, Finding{
			Code: code, Severity: Error, Level: "Error",
			Source: model.Source{File: e.File, Line: e.Line}, Kind: e.Kind, Object: e.Name,
			Message: msg, Hint: hint,
		})
	}
	return out
}

func sortFindings(fs []Finding) {
	for i := range fs {
		fs[i].Level = fs[i].Severity.String()
	}
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Source.File != b.Source.File {
			return a.Source.File < b.Source.File
		}
		if a.Source.Line != b.Source.Line {
			return a.Source.Line < b.Source.Line
		}
		return a.Code < b.Code
	})
}

// Max returns the highest severity of findings, and false when there are none.
func Max(fs []Finding) (Severity, bool) {
	if len(fs) == 0 {
		return Info, false
	}
	m := Info
	for _, f := range fs {
		m = max(m, f.Severity)
	}
	return m, true
}

// WriteText prints findings one per line (plus an indented hint), then a summary.
func WriteText(w io.Writer, fs []Finding) {
	for _, f := range fs {
		where := f.Source.File
		if f.Source.Line > 0 {
			where = fmt.Sprintf("%s:%d", where, f.Source.Line)
		}
		obj := ""
		if f.Kind != "" {
			obj = " " + f.Kind
			if f.Object != "" {
				obj += " " + f.Object
			}
			obj += ":"
		}
		fmt.Fprintf(w, "%s [%s] %s:%s %s\n", f.Severity, f.Code, where, obj, f.Message)
		if f.Hint != "" {
			fmt.Fprintf(w, "    hint: %s\n", f.Hint)
		}
	}
	if len(fs) == 0 {
		fmt.Fprintln(w, "No problems found.")
		return
	}
	counts := map[Severity]int{}
	for _, f := range fs {
		counts[f.Severity]++
	}
	fmt.Fprintf(w, "%d error(s), %d warning(s), %d info\n", counts[Error], counts[Warning], counts[Info])
}

// finding builds a finding about a model object.
func finding(code string, sev Severity, kind string, nn model.NamespacedName, src model.Source, hint, format string, args ...any) Finding {
	return Finding{Code: code, Severity: sev, Source: src, Kind: kind, Object: nn.Namespace + "/" + nn.Name, Message: fmt.Sprintf(format, args...), Hint: hint}
}
