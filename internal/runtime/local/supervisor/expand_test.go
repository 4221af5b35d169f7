package supervisor

import (
	"net"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExpandArgs(t *testing.T) {
	env := map[string]string{"PORT": "18080", "NAME": "catalog", "EMPTY": ""}
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"plain", "--verbose", "--verbose"},
		{"whole word", "$(PORT)", "18080"},
		{"inside a word", "--port=$(PORT)", "--port=18080"},
		{"two references", "$(NAME):$(PORT)", "catalog:18080"},
		{"defined but empty", "x$(EMPTY)y", "xy"},
		{"unknown stays", "$(NOPE)", "$(NOPE)"},
		{"escaped", "$$(PORT)", "$(PORT)"},
		{"escaped dollar alone", "a$$b", "a$b"},
		{"shell syntax untouched", "$PORT ${PORT}", "$PORT ${PORT}"},
		{"unterminated", "$(PORT", "$(PORT"},
		{"trailing dollar", "cost$", "cost$"},
		{"empty name", "$()", "$()"},
		{"escape then reference", "$$$(PORT)", "$18080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ExpandArgs([]string{tt.in}, env)
			if diff := cmp.Diff([]string{tt.want}, got); diff != "" {
				t.Errorf("ExpandArgs(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestExpandArgsDoesNotModifyInput(t *testing.T) {
	in := []string{"$(A)", "b"}
	ExpandArgs(in, map[string]string{"A": "x"})
	if diff := cmp.Diff([]string{"$(A)", "b"}, in); diff != "" {
		t.Errorf("input changed (-want +got):\n%s", diff)
	}
}

func TestResolveCommand(t *testing.T) {
	tests := []struct {
		name string
		cmd  []string
		want []string
	}{
		{"skein", []string{"skein", "echo", "--port", "1"}, []string{"/bin/skein-self", "echo", "--port", "1"}},
		{"other program", []string{"/bin/sh", "-c", "skein"}, []string{"/bin/sh", "-c", "skein"}},
		{"path to skein kept", []string{"./skein", "echo"}, []string{"./skein", "echo"}},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ResolveCommand(tt.cmd, "/bin/skein-self")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAllocatePorts(t *testing.T) {
	ports, err := AllocatePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: bad or repeated %d", ports, p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d not free after allocation: %v", p, err)
			continue
		}
		ln.Close()
	}
}
