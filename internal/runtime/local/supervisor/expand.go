package supervisor

import "strings"

// ExpandArgs expands Kubernetes-style $(VAR) references in args, as a Pod's command and
// args are expanded: $(NAME) becomes env[NAME] when NAME is defined and stays as written
// otherwise; $$ is an escaped $, so $$(NAME) becomes the literal $(NAME). No shell is
// involved, so $NAME and ${NAME} are left alone.
func ExpandArgs(args []string, env map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expand(a, env)
	}
	return out
}

func expand(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; {
		case next == '$': // escaped operator
			b.WriteByte('$')
			i++
		case next == '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 { // unterminated: literal
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// ResolveCommand replaces a first word "skein" with self (this binary's path, from
// os.Executable), so workloads can run `skein echo` without skein being on PATH and
// always get the same build as the mesh that runs them.
func ResolveCommand(cmd []string, self string) []string {
	out := append([]string(nil), cmd...)
	if len(out) > 0 && out[0] == "skein" && self != "" {
		out[0] = self
	}
	return out
}
