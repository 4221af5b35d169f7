package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"skein.dev/skein/internal/observe"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write docs/dashboard.png from the browser test")

// TestDashboardInChromium opens the dashboard served by skein up in headless Debian
// Chromium (driven by playwright-core from ui/node_modules) and checks that the graph
// shows the demo's services with the numbers skein stat computes.
// Needs: apt-get install -y chromium nodejs npm; (cd ui && npm ci).
func TestDashboardInChromium(t *testing.T) {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("browser test skipped: no Chromium at " + chromium + " (apt-get install -y chromium)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("browser test skipped: node is not installed (apt-get install -y nodejs npm)")
	}
	uiDir, _ := filepath.Abs("../../ui")
	if _, err := os.Stat(filepath.Join(uiDir, "node_modules", "playwright-core")); err != nil {
		t.Skip("browser test skipped: playwright-core is not installed (cd ui && npm ci)")
	}

	m := startMesh(t, copyDir(t, demoDir))
	st, err := m.status()
	if err != nil || st.Dashboard == "" {
		t.Fatalf("status has no dashboard address: %v %+v", err, st)
	}
	// The dashboard's window is 10 s: let it fill with the demo's steady load.
	time.Sleep(12 * time.Second)

	shot := filepath.Join(t.TempDir(), "dashboard.png")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(uiDir, "e2e", "graph.mjs"), "http://"+st.Dashboard+"/", shot)
	cmd.Dir = uiDir
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("browser: %v\n%s", err, out)
	}
	var got struct {
		Nodes      []struct{ Name, RPS string }
		Edges      []struct{ From, To, RPS string }
		Workloads  []struct{ Name, RPS string }
		RoutesText string
		Charts     int
		TapRows    int
		Error      string
	}
	if err := json.Unmarshal([]byte(jsonLine(string(out))), &got); err != nil || got.Error != "" {
		t.Fatalf("browser output: %v %s\n%s", err, got.Error, out)
	}
	names := map[string]float64{}
	for _, n := range got.Nodes {
		names[n.Name], _ = strconv.ParseFloat(n.RPS, 64)
	}
	for _, want := range []string{"load.default", "frontend.default", "catalog-v1.default", "catalog-v2.default", "inventory.default",
		"svc:frontend.default.svc.cluster.local", "svc:catalog.default.svc.cluster.local", "svc:inventory.default.svc.cluster.local"} {
		if _, ok := names[want]; !ok {
			t.Errorf("graph lacks node %s: %+v", want, got.Nodes)
		}
	}
	if !strings.Contains(got.RoutesText, "canary") || !strings.Contains(got.RoutesText, "split") || got.Charts != 3 || got.TapRows == 0 {
		t.Errorf("service page or tap page incomplete: routes %q, %d charts, %d tap rows", got.RoutesText, got.Charts, got.TapRows)
	}

	// The same numbers as skein stat: both are differences of scrapes of the same
	// counters over a window, taken a few seconds apart, of a steady 5 rps load.
	statOut, err := m.skein("stat", "-w", "5s", "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, statOut)
	}
	var stat observe.Result
	if err := json.Unmarshal([]byte(statOut), &stat); err != nil {
		t.Fatal(err)
	}
	for _, r := range stat.Workloads {
		if r.Name != "frontend" && r.Name != "inventory" {
			continue
		}
		ui := names[r.Name+"."+r.Namespace]
		if math.Abs(ui-r.RPS) > 1.0 || ui < 3 {
			t.Errorf("%s: dashboard shows %.2f rps, skein stat %.2f rps", r.Name, ui, r.RPS)
		}
	}
	if *updateScreenshot {
		data, err := os.ReadFile(shot)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../../docs/dashboard.png", data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
