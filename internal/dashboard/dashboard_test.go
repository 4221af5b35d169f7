package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"skein.dev/skein/internal/api"
	"skein.dev/skein/internal/model"
)

// staticSource is a mesh that never changes: enough for the config views.
type staticSource struct{ mesh *model.Mesh }

func (s staticSource) Status(context.Context) (api.Status, error)  { return api.Status{}, nil }
func (s staticSource) Config(context.Context) (*model.Mesh, error) { return s.mesh, nil }

func TestHandler(t *testing.T) {
	mesh := &model.Mesh{
		Services:  []*model.Service{{NamespacedName: model.NamespacedName{Namespace: "default", Name: "catalog"}, Selector: map[string]string{"app": "catalog"}}},
		Workloads: []*model.Workload{{NamespacedName: model.NamespacedName{Namespace: "default", Name: "catalog-v1"}, Labels: map[string]string{"app": "catalog"}}},
		VirtualServices: []*model.VirtualService{{NamespacedName: model.NamespacedName{Namespace: "default", Name: "catalog"},
			Hosts: []string{"catalog.default.svc.cluster.local"}, HTTP: []model.HTTPRoute{{Name: "split"}}}},
	}
	s := &Server{opts: Options{Source: staticSource{mesh}}}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "assets/app.js") {
		t.Errorf("index: %d %s", resp.StatusCode, body)
	}
	if resp, _ := http.Get(srv.URL + "/api/stats"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/api/stats before two scrapes: %d, want 503", resp.StatusCode)
	}
	resp, err = http.Get(srv.URL + "/api/service?host=catalog.default.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	var v ServiceView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(v.Workloads) != 1 || v.Workloads[0] != "catalog-v1" || len(v.VirtualServices) != 1 || v.VirtualServices[0].HTTP[0].Name != "split" {
		t.Errorf("service view %+v", v)
	}
}
